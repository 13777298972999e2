//! The gate rule: from the facts about one person at one gate to allow or deny, with the
//! reason. The node and the offline gate both reach [`decide`] through the one pipeline in
//! [`crate::check`]; only what they know differs (the node its roster, the gate its cache).

use crate::credential::HolderKind;

/// At or above 37.3 °C a person is refused and flagged to the guard (tenths of a degree).
pub const FEVER_DC: i16 = 373;
/// Readings outside 30.0..=45.0 °C are thermometer errors, not people: refuse the request.
pub const TEMPERATURE_DC_MIN: i16 = 300;
/// The upper end of [`TEMPERATURE_DC_MIN`]'s range (45.0 °C, tenths of a degree).
pub const TEMPERATURE_DC_MAX: i16 = 450;

/// Why a gate allowed or refused someone. The names are stable: logs, JSON and the demo's
/// `denied_by_reason` use them.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Reason {
    /// Let through.
    Ok,
    /// Not a Menjin code, or damaged: prefix, base45, layout ([`crate::CodeError::Malformed`]).
    Malformed,
    /// A code version this side does not read (a newer system issued it).
    UnknownVersion,
    /// Forged or altered: the signature does not verify, a node signed for a community not
    /// its own, or the bytes differ from what the node issued under that id.
    BadSignature,
    /// Signed by a key other than the community node's certified one (or the gate has no
    /// valid trust data).
    UnknownIssuer,
    /// Past the code's `valid_until`.
    Expired,
    /// Before the code's `valid_from`.
    NotYetValid,
    /// A code of another community, whoever signed it.
    WrongCommunity,
    /// Revoked: replaced by a new declaration, or a district health list took the
    /// holder's clearance away.
    Revoked,
    /// Signed by this community's node, but the node has no record of it (restored backup?).
    UnknownCode,
    /// [`FEVER_DC`] or more with a code that is otherwise fine.
    Fever,
    /// A visitor whose host withdrew consent, or whose host is no longer cleared.
    NoConsent,
    /// A vehicle with an outside person in it.
    VehicleBarred,
    /// The community is locked down: no visitors, no vehicles, and (by default) residents
    /// may not go out.
    Lockdown,
    /// Signed by a node key the district revoked (`menjin hub revoke-node`): a gate alone
    /// cannot tell such a code from one forged with the leaked key.
    IssuerRevoked,
}

impl Reason {
    /// Every reason, in declaration order: for tables and counters that list them all.
    pub const ALL: [Reason; 15] = [
        Reason::Ok,
        Reason::Malformed,
        Reason::UnknownVersion,
        Reason::BadSignature,
        Reason::UnknownIssuer,
        Reason::Expired,
        Reason::NotYetValid,
        Reason::WrongCommunity,
        Reason::Revoked,
        Reason::UnknownCode,
        Reason::Fever,
        Reason::NoConsent,
        Reason::VehicleBarred,
        Reason::Lockdown,
        Reason::IssuerRevoked,
    ];

    /// The stable snake_case name (the serde form), as logs and JSON carry it.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Ok => "ok",
            Reason::Malformed => "malformed",
            Reason::UnknownVersion => "unknown_version",
            Reason::BadSignature => "bad_signature",
            Reason::UnknownIssuer => "unknown_issuer",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::WrongCommunity => "wrong_community",
            Reason::Revoked => "revoked",
            Reason::UnknownCode => "unknown_code",
            Reason::Fever => "fever",
            Reason::NoConsent => "no_consent",
            Reason::VehicleBarred => "vehicle_barred",
            Reason::Lockdown => "lockdown",
            Reason::IssuerRevoked => "issuer_revoked",
        }
    }

    /// What the guard reads on the screen.
    pub fn explain(self) -> &'static str {
        match self {
            Reason::Ok => "code valid",
            Reason::Malformed => "not a Menjin code (damaged or wrong QR)",
            Reason::UnknownVersion => "code from a newer system version",
            Reason::BadSignature => "forged or altered code",
            Reason::UnknownIssuer => "code issued by a node this district does not know",
            Reason::Expired => "code expired",
            Reason::NotYetValid => "code not valid yet",
            Reason::WrongCommunity => "code belongs to another community",
            Reason::Revoked => "code revoked (new declaration or health status)",
            Reason::UnknownCode => "code not on this community's roster",
            Reason::Fever => "body temperature 37.3 °C or more: refer to the health post",
            Reason::NoConsent => "visitor without a resident's valid consent",
            Reason::VehicleBarred => "outside vehicles may not enter",
            Reason::Lockdown => {
                "community locked down (confirmed case): no visitors, no vehicles, residents stay in"
            }
            Reason::IssuerRevoked => {
                "code signed by a node key the district revoked: ask the office for a new code"
            }
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What is known about one person at the gate.
#[derive(Clone, Copy, Debug)]
pub struct Facts {
    /// The code's own check (signature, community, window): the holder kind, or the refusal.
    pub code: Result<HolderKind, Reason>,
    /// The code is on the revocation list.
    pub revoked: bool,
    /// For visitors: the host's consent is in force (`None` for everyone else).
    pub consent_active: Option<bool>,
    /// Body temperature in tenths of a degree Celsius; [`FEVER_DC`] or more is a fever.
    pub temperature_dc: i16,
    /// The person is in a vehicle.
    pub in_vehicle: bool,
    /// Going out rather than in.
    pub leaving: bool,
    /// The community is locked down.
    pub lockdown: bool,
    /// During a lockdown, residents may still go out (a per-community setting; staff always
    /// may).
    pub residents_may_leave: bool,
}

/// The outcome at the gate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The lock opens: exactly when `reason` is [`Reason::Ok`].
    pub allowed: bool,
    /// Why; the first that applies in [`decide`]'s order.
    pub reason: Reason,
    /// 37.3 °C or more: the guard must act whatever the code says.
    pub fever: bool,
}

/// Applies the rule. A problem with the code itself outranks everything; then revocation,
/// consent, vehicles; a fever refuses a person whose code is fine. A fever is always flagged.
pub fn decide(f: &Facts) -> Verdict {
    let fever = f.temperature_dc >= FEVER_DC;
    let reason = match f.code {
        Err(reason) => reason,
        Ok(_) if f.revoked => Reason::Revoked,
        // A lockdown bars every outsider and every vehicle (order point 7); residents come
        // home, and leave only where the community allows it (staff always may).
        Ok(HolderKind::Visitor) if f.lockdown => Reason::Lockdown,
        Ok(_) if f.lockdown && f.in_vehicle => Reason::Lockdown,
        Ok(HolderKind::Resident | HolderKind::Dependent)
            if f.lockdown && f.leaving && !f.residents_may_leave =>
        {
            Reason::Lockdown
        }
        Ok(HolderKind::Visitor) if f.consent_active != Some(true) => Reason::NoConsent,
        Ok(HolderKind::Visitor) if f.in_vehicle => Reason::VehicleBarred,
        Ok(_) if fever => Reason::Fever,
        Ok(_) => Reason::Ok,
    };
    Verdict {
        allowed: reason == Reason::Ok,
        reason,
        fever,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(kind: HolderKind) -> Facts {
        Facts {
            code: Ok(kind),
            revoked: false,
            consent_active: (kind == HolderKind::Visitor).then_some(true),
            temperature_dc: 365,
            in_vehicle: false,
            leaving: false,
            lockdown: false,
            residents_may_leave: false,
        }
    }

    #[test]
    fn lockdown_bars_outsiders_and_vehicles_and_keeps_residents_in() {
        let locked = |kind, leaving, in_vehicle| {
            let mut f = facts(kind);
            f.lockdown = true;
            f.leaving = leaving;
            f.in_vehicle = in_vehicle;
            decide(&f).reason
        };
        assert_eq!(locked(HolderKind::Visitor, false, false), Reason::Lockdown);
        assert_eq!(locked(HolderKind::Resident, false, false), Reason::Ok);
        assert_eq!(locked(HolderKind::Resident, false, true), Reason::Lockdown);
        assert_eq!(locked(HolderKind::Resident, true, false), Reason::Lockdown);
        assert_eq!(locked(HolderKind::Dependent, true, false), Reason::Lockdown);
        assert_eq!(locked(HolderKind::Staff, true, false), Reason::Ok);
        let mut f = facts(HolderKind::Resident);
        f.lockdown = true;
        f.leaving = true;
        f.residents_may_leave = true;
        assert_eq!(decide(&f).reason, Reason::Ok);
        // A revoked code is still refused as revoked: the guard needs that reason.
        let mut f = facts(HolderKind::Visitor);
        f.lockdown = true;
        f.revoked = true;
        assert_eq!(decide(&f).reason, Reason::Revoked);
    }

    #[test]
    fn healthy_resident_is_allowed() {
        assert_eq!(
            decide(&facts(HolderKind::Resident)),
            Verdict {
                allowed: true,
                reason: Reason::Ok,
                fever: false
            }
        );
    }

    #[test]
    fn fever_is_refused_and_flagged_even_with_a_bad_code() {
        let mut f = facts(HolderKind::Resident);
        f.temperature_dc = FEVER_DC;
        assert_eq!(
            decide(&f),
            Verdict {
                allowed: false,
                reason: Reason::Fever,
                fever: true
            }
        );
        f.code = Err(Reason::Expired);
        assert_eq!(
            decide(&f),
            Verdict {
                allowed: false,
                reason: Reason::Expired,
                fever: true
            }
        );
        f.code = Ok(HolderKind::Resident);
        f.temperature_dc = FEVER_DC - 1;
        assert!(decide(&f).allowed);
    }

    #[test]
    fn visitor_needs_consent_and_no_vehicle() {
        let mut f = facts(HolderKind::Visitor);
        assert!(decide(&f).allowed);
        f.in_vehicle = true;
        assert_eq!(decide(&f).reason, Reason::VehicleBarred);
        f.in_vehicle = false;
        f.consent_active = Some(false);
        assert_eq!(decide(&f).reason, Reason::NoConsent);
    }

    #[test]
    fn resident_in_a_vehicle_is_checked_as_a_person() {
        let mut f = facts(HolderKind::Resident);
        f.in_vehicle = true;
        assert!(decide(&f).allowed);
    }

    #[test]
    fn revoked_outranks_consent() {
        let mut f = facts(HolderKind::Visitor);
        f.revoked = true;
        assert_eq!(decide(&f).reason, Reason::Revoked);
    }

    #[test]
    fn reason_names_are_unique() {
        let mut names: Vec<_> = Reason::ALL.iter().map(|r| r.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
    }
}
