//! The node's staff operations: add, change the password of and remove an account (console,
//! `menjin staff`), log in and look up a session's account (the pages). Storage is
//! `crate::staff`.

use menjin_proto::staff::{Password, StaffRole, check_name, check_password};

use super::*;
use crate::staff::{StaffMember, StaffStoreError};

impl From<StaffStoreError> for Refusal {
    fn from(e: StaffStoreError) -> Refusal {
        match e {
            StaffStoreError::Exists(_) | StaffStoreError::Full => refused(e.to_string()),
            StaffStoreError::Unknown(_) => not_found(e.to_string()),
            _ => {
                tracing::error!(error = %e, "staff storage failure");
                Refusal {
                    kind: ErrorKind::Internal,
                    message: e.to_string(),
                }
            }
        }
    }
}

fn checked_name(name: &str) -> Result<(), Refusal> {
    check_name(name).map_err(|e| bad(e.to_string()))
}

impl Node {
    pub(super) fn add_staff(
        &self,
        name: &str,
        role: StaffRole,
        password: &Password,
        now: UnixTime,
    ) -> Result<Response, Refusal> {
        checked_name(name)?;
        check_password(password).map_err(|e| bad(e.to_string()))?;
        self.staff.add(name, role, password, now)?;
        tracing::info!(staff = %name, role = role.as_str(), "staff account added");
        Ok(Response::Done(format!(
            "staff member {name} added ({})",
            role.as_str()
        )))
    }

    pub(super) fn set_staff_password(
        &self,
        name: &str,
        password: &Password,
        now: UnixTime,
    ) -> Result<Response, Refusal> {
        checked_name(name)?;
        check_password(password).map_err(|e| bad(e.to_string()))?;
        self.staff.set_password(name, password, now)?;
        tracing::info!(staff = %name, "staff password changed");
        Ok(Response::Done(format!(
            "password of {name} changed; their open sessions ended"
        )))
    }

    pub(super) fn remove_staff(&self, name: &str) -> Result<Response, Refusal> {
        checked_name(name)?;
        self.staff.remove(name)?;
        tracing::info!(staff = %name, "staff account removed");
        Ok(Response::Done(format!(
            "staff member {name} removed; their open sessions ended"
        )))
    }

    /// The account a name and password open (`None`: wrong name or wrong password, in the
    /// same time). Blocking (one argon2 verification, tens of milliseconds).
    ///
    /// # Errors
    /// A [`Refusal`] on storage failure.
    pub fn staff_login(&self, name: &str, password: &str) -> Result<Option<StaffMember>, Refusal> {
        Ok(self.staff.login(name, password)?)
    }

    /// A session's account again, if it still exists (removed: `None`; its stamp changes
    /// with every password change).
    ///
    /// # Errors
    /// A [`Refusal`] on storage failure.
    pub fn staff_member(&self, name: &str) -> Result<Option<StaffMember>, Refusal> {
        Ok(self.staff.member(name)?)
    }
}
