//! Staff accounts at a community node (the clerks and the head of the office who use the
//! node's pages): their roles, the rules for names and passwords that the node applies to
//! every request, and the password as it travels from the console to the node (never shown
//! by `Debug`, so it cannot reach a log line by accident).

use serde::{Deserialize, Serialize};

/// A staff member's name, in characters: a person's name or a short login ("李文", "clerk-2").
pub const STAFF_NAME_CHARS_MAX: usize = 32;
/// Shortest password, in characters: typed at an office PC, guessed only through the
/// rate-limited login page.
pub const PASSWORD_CHARS_MIN: usize = 10;
/// Longest password, in characters (argon2 takes any length; a bound keeps requests small).
pub const PASSWORD_CHARS_MAX: usize = 128;
/// Staff accounts per node: an office, not a city.
pub const STAFF_MAX: usize = 256;

/// What a staff member may do at the node's pages. Ordered: a head may do what a clerk may.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum StaffRole {
    /// Types in paper declarations, prints passes, serves residents at the office.
    Clerk,
    /// The head of the office: a clerk's pages and the community-wide ones.
    Head,
}

impl StaffRole {
    /// `clerk` or `head`, as typed on the command line and shown on the pages.
    pub fn as_str(self) -> &'static str {
        match self {
            StaffRole::Clerk => "clerk",
            StaffRole::Head => "head",
        }
    }

    /// The role named `clerk` or `head`.
    pub fn parse(s: &str) -> Option<StaffRole> {
        match s {
            "clerk" => Some(StaffRole::Clerk),
            "head" => Some(StaffRole::Head),
            _ => None,
        }
    }
}

/// A password on its way to the node, where it is hashed (argon2) and dropped.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Password(pub String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(..)")
    }
}

/// Why a staff name or password is refused; nothing is changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StaffError {
    /// An empty name.
    #[error("staff name is empty")]
    EmptyName,
    /// Longer than [`STAFF_NAME_CHARS_MAX`].
    #[error("staff name is longer than {STAFF_NAME_CHARS_MAX} characters")]
    NameTooLong,
    /// Control, invisible or format characters, or spaces at either end.
    #[error(
        "staff name may hold only printable characters (no control or invisible characters, \
         no spaces at either end)"
    )]
    NameNotPrintable,
    /// Shorter than [`PASSWORD_CHARS_MIN`].
    #[error("password is shorter than {PASSWORD_CHARS_MIN} characters")]
    PasswordTooShort,
    /// Longer than [`PASSWORD_CHARS_MAX`].
    #[error("password is longer than {PASSWORD_CHARS_MAX} characters")]
    PasswordTooLong,
    /// Control characters (a pasted newline, a NUL).
    #[error("password may not hold control characters")]
    PasswordNotPrintable,
}

/// Characters that print as nothing, or reorder text, so two names that look the same could
/// differ: zero-width spaces and joiners, bidirectional controls, the byte-order mark.
fn invisible(c: char) -> bool {
    matches!(c, '\u{00AD}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Checks a staff member's name as given (it is stored exactly so).
///
/// # Errors
/// A [`StaffError`] naming what is wrong.
pub fn check_name(name: &str) -> Result<(), StaffError> {
    if name.is_empty() {
        return Err(StaffError::EmptyName);
    }
    if name.chars().count() > STAFF_NAME_CHARS_MAX {
        return Err(StaffError::NameTooLong);
    }
    let bad = |c: char| c.is_control() || invisible(c) || (c.is_whitespace() && c != ' ');
    if name.chars().any(bad) || name.trim() != name {
        return Err(StaffError::NameNotPrintable);
    }
    Ok(())
}

/// Checks a new password's length and characters.
///
/// # Errors
/// A [`StaffError`] naming what is wrong (never the password).
pub fn check_password(password: &Password) -> Result<(), StaffError> {
    let n = password.0.chars().count();
    if n < PASSWORD_CHARS_MIN {
        return Err(StaffError::PasswordTooShort);
    }
    if n > PASSWORD_CHARS_MAX {
        return Err(StaffError::PasswordTooLong);
    }
    if password.0.chars().any(char::is_control) {
        return Err(StaffError::PasswordNotPrintable);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_printable_and_bounded() {
        assert_eq!(check_name("李文"), Ok(()));
        assert_eq!(check_name("clerk 2"), Ok(()));
        assert_eq!(check_name(""), Err(StaffError::EmptyName));
        assert_eq!(check_name(&"字".repeat(33)), Err(StaffError::NameTooLong));
        assert_eq!(check_name(&"字".repeat(32)), Ok(()));
        for bad in [
            "a\u{0}b",
            "a\nb",
            "a\tb",
            " ab",
            "ab ",
            "a\u{200B}b",
            "a\u{202E}b",
        ] {
            assert_eq!(
                check_name(bad),
                Err(StaffError::NameNotPrintable),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn passwords_are_bounded_and_never_shown() {
        let pw = |s: &str| Password(s.to_string());
        assert_eq!(check_password(&pw("correct horse")), Ok(()));
        assert_eq!(
            check_password(&pw("short")),
            Err(StaffError::PasswordTooShort)
        );
        assert_eq!(
            check_password(&pw(&"x".repeat(129))),
            Err(StaffError::PasswordTooLong)
        );
        assert_eq!(
            check_password(&pw("long enough\u{0}")),
            Err(StaffError::PasswordNotPrintable)
        );
        assert_eq!(format!("{:?}", pw("correct horse")), "Password(..)");
    }

    #[test]
    fn a_head_ranks_above_a_clerk() {
        assert!(StaffRole::Head > StaffRole::Clerk);
        assert_eq!(StaffRole::parse("head"), Some(StaffRole::Head));
        assert_eq!(StaffRole::parse("admin"), None);
        assert_eq!(StaffRole::Clerk.as_str(), "clerk");
    }
}
