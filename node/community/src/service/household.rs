//! The node's household operations: issue and revoke a home's code (console), open a home
//! with a code, declare through it, and the home's members with their codes (the resident
//! pages); and what a home's session does for others: declare a dependent (the proxy rule),
//! attach a dependent's photo for a printed pass, invite a visitor and withdraw the consent,
//! each only for this home's own members (`member_of`). Storage is `crate::households`; a
//! home's invitations are read from the roster's view (`Roster::visits_of`).

use menjin_proto::record::CredRecord;
use menjin_proto::wire::ConsoleRequest;

use super::*;
use crate::households::{Household, HouseholdCode, HouseholdError};

/// A code as "my declarations" shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodeState {
    /// In force: the gate lets its holder through (the rule permitting).
    Active,
    /// Past its validity: the person declares again for a new one.
    Expired,
    /// Revoked (a new declaration, a health list, staff).
    Revoked {
        /// Why, in the words of the record.
        why: String,
    },
}

/// One person of a home, as the resident pages show them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The person's holder id (never their ID number).
    pub holder: HolderId,
    /// As declared.
    pub name: String,
    /// Resident, dependent, staff.
    pub kind: HolderKind,
    /// The automatic review's outcome.
    pub outcome: Outcome,
    /// Why the review decided so, in words.
    pub why: String,
    /// The code text (`MJ:...`), its end of validity and state, if the person has one.
    pub code: Option<(String, UnixTime, CodeState)>,
    /// A photo is on file for a printed pass.
    pub has_photo: bool,
}

/// A home's list shows at most this many invitations, newest first.
pub const INVITATIONS_SHOWN_MAX: usize = 30;
/// Invitations of one home in force at once: visits are special cases (the order refuses
/// outsiders), and a session must not mint codes without end.
pub const INVITATIONS_ACTIVE_MAX: usize = 10;

/// Where an invitation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InvitationState {
    /// Its window has not begun yet.
    Upcoming,
    /// In force: the gate lets the visitor in (the rule permitting).
    Active,
    /// Its window is over.
    Expired,
    /// The host withdrew the consent.
    Withdrawn,
    /// The host no longer holds a valid code: the consent does not stand.
    HostLapsed,
}

/// One visitor invited by a member of a home.
#[derive(Clone, Debug)]
pub struct Invitation {
    /// The visitor code's id (to withdraw it).
    pub cred: CredId,
    /// The code text (`MJ:...`) to show or send to the visitor.
    pub code: String,
    /// As the host typed it.
    pub visitor_name: String,
    /// The consenting member.
    pub host: HolderId,
    /// The host's name.
    pub host_name: String,
    /// The window (Unix seconds).
    pub from: UnixTime,
    /// End of the window (Unix seconds).
    pub until: UnixTime,
    /// Where it stands now.
    pub state: InvitationState,
}

/// Why a home's session may not do what it asked for someone; the pages show each beside
/// its field.
#[derive(Debug)]
#[non_exhaustive]
pub enum HomeRefusal {
    /// The person named is not a member of this home (a stale or forged form).
    NotMember,
    /// The member holds no code in force: cannot declare for others or consent to visitors.
    NoValidCode,
    /// The proxy rule: the declaring member is under 18.
    NotAdult,
    /// The proxy rule: a proxy declaration is for someone else.
    Themself,
    /// The person is declared at another home (the office moves people).
    OtherHome,
    /// No invitation of this home has that code.
    NoInvitation,
    /// The invitation's consent is withdrawn already.
    NotInForce,
    /// [`INVITATIONS_ACTIVE_MAX`] invitations of the home are in force.
    TooManyInvitations,
    /// The node refused or failed otherwise, in its own words.
    Node(Refusal),
}

impl From<Refusal> for HomeRefusal {
    fn from(r: Refusal) -> HomeRefusal {
        HomeRefusal::Node(r)
    }
}

impl From<RosterError> for HomeRefusal {
    fn from(e: RosterError) -> HomeRefusal {
        HomeRefusal::Node(e.into())
    }
}

impl From<HouseholdError> for HomeRefusal {
    fn from(e: HouseholdError) -> HomeRefusal {
        HomeRefusal::Node(e.into())
    }
}

fn node_refusal(resp: Response) -> HomeRefusal {
    match resp {
        Response::Error { kind, message } => HomeRefusal::Node(Refusal { kind, message }),
        _ => HomeRefusal::Node(Refusal {
            kind: ErrorKind::Internal,
            message: "unexpected answer".into(),
        }),
    }
}

impl From<HouseholdError> for Refusal {
    fn from(e: HouseholdError) -> Refusal {
        match e {
            HouseholdError::NoCode { .. } => not_found(e.to_string()),
            HouseholdError::TooManyMembers => refused(e.to_string()),
            _ => {
                tracing::error!(error = %e, "household storage failure");
                Refusal {
                    kind: ErrorKind::Internal,
                    message: e.to_string(),
                }
            }
        }
    }
}

fn home_labels(building: &str, door: &str) -> Result<(String, String), Refusal> {
    let (building, door) = (building.trim(), door.trim());
    if building.chars().chain(door.chars()).any(char::is_control) {
        return Err(bad("building and door: no control characters"));
    }
    Credential::check_labels(building, door).map_err(|e| bad(e.to_string()))?;
    Ok((building.to_string(), door.to_string()))
}

impl Node {
    pub(super) fn issue_household(
        &self,
        building: &str,
        door: &str,
        now: UnixTime,
    ) -> Result<Response, Refusal> {
        let (building, door) = home_labels(building, door)?;
        let code = self.households.issue(&building, &door, now)?;
        // A reissue ends the home's sessions: their live pages say so.
        self.changed();
        tracing::info!(%building, %door, "household code issued");
        Ok(Response::HouseholdCode {
            building,
            door,
            code: code.to_text(),
        })
    }

    pub(super) fn revoke_household(
        &self,
        building: &str,
        door: &str,
        now: UnixTime,
    ) -> Result<Response, Refusal> {
        let (building, door) = home_labels(building, door)?;
        self.households.revoke(&building, &door, now)?;
        self.changed();
        tracing::info!(%building, %door, "household code revoked");
        Ok(Response::Done(format!(
            "household code of building {building} door {door} revoked"
        )))
    }

    /// Whether the home (building and door checked as the console checks them) has a code in
    /// force: the office's slip sheet reissues such a home's code only when asked to.
    ///
    /// # Errors
    /// A [`Refusal`] for a bad building or door, or on storage failure.
    pub fn household_in_force(&self, building: &str, door: &str) -> Result<bool, Refusal> {
        let (building, door) = home_labels(building, door)?;
        Ok(self.households.in_force(&building, &door)?)
    }

    /// Per building, the homes with a household code in force where nobody is declared yet
    /// (online or on paper), sorted by building then door; buildings with every such home
    /// declared are listed with no doors. One pass over the roster and the household tree:
    /// the office's progress page, not a hot path. Blocking.
    ///
    /// # Errors
    /// A [`Refusal`] on storage failure.
    pub fn homes_not_declared(&self) -> Result<Vec<(String, Vec<String>)>, Refusal> {
        use std::collections::{BTreeMap, BTreeSet};
        let mut declared: BTreeSet<(String, String)> = BTreeSet::new();
        for p in self.roster.persons() {
            let p = p?;
            declared.insert((p.form.building, p.form.door));
        }
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (building, door, in_force) in self.households.homes()? {
            if !in_force {
                continue;
            }
            let doors = out.entry(building.clone()).or_default();
            if !declared.contains(&(building, door.clone())) {
                doors.push(door);
            }
        }
        Ok(out.into_iter().collect())
    }

    /// The home a typed household code opens, if it is in force.
    ///
    /// # Errors
    /// A [`Refusal`] on storage failure (an unknown code is `Ok(None)`).
    pub fn open_household(&self, code: &HouseholdCode) -> Result<Option<Household>, Refusal> {
        Ok(self.households.lookup(code)?)
    }

    /// A session's home again, if its code is still in force (revoked or reissued: `None`).
    ///
    /// # Errors
    /// A [`Refusal`] on storage failure.
    pub fn household(&self, code_hash: &[u8; 32]) -> Result<Option<Household>, Refusal> {
        Ok(self.households.by_hash(code_hash)?)
    }

    /// An online declaration through a home's session: the home is the session's whatever
    /// the form says, and a person declared at another home is not moved from here (that
    /// would hand this home their code). Blocking.
    pub fn declare_in_household(
        &self,
        home: &Household,
        mut form: Declaration,
        now: UnixTime,
    ) -> Response {
        at_home(home, &mut form);
        if let Err(r) = self.not_elsewhere(home, &form) {
            let r = match r {
                HomeRefusal::Node(r) => r,
                _ => refused("this person is declared at another home: ask the office"),
            };
            return Response::Error {
                kind: r.kind,
                message: r.message,
            };
        }
        let resp = self.console(ConsoleRequest::Declare { form }, now);
        if let Response::Declared(r) = &resp {
            self.add_member(home, r.holder);
        }
        resp
    }

    /// A dependent of the home (an elderly parent, a child) declared by `by`, a member of
    /// the same home holding a code in force: the proxy rule, with the home the session's.
    /// Blocking.
    ///
    /// # Errors
    /// A [`HomeRefusal`]; nothing is stored.
    pub fn declare_for_dependent(
        &self,
        home: &Household,
        by: HolderId,
        mut form: Declaration,
        now: UnixTime,
    ) -> Result<Receipt, HomeRefusal> {
        let proxy = self.member_of(home, &by)?;
        if !self.roster.holder_active(&by, now) {
            return Err(HomeRefusal::NoValidCode);
        }
        at_home(home, &mut form);
        let today = Self::today(now);
        if proxy.id_hash == self.idhash.hash(form.document_type, &form.document_number) {
            return Err(HomeRefusal::Themself);
        }
        let adult = proxy
            .form
            .check(today)
            .is_ok_and(|c| c.birth.age_on(today) >= menjin_proto::declaration::ADULT_AGE);
        if !adult {
            return Err(HomeRefusal::NotAdult);
        }
        self.not_elsewhere(home, &form)?;
        match self.console(ConsoleRequest::DeclareProxy { by, form }, now) {
            Response::Declared(r) => {
                self.add_member(home, r.holder);
                Ok(r)
            }
            other => Err(node_refusal(other)),
        }
    }

    /// A photo for a member's printed pass (checked by `photo::check_photo`). Blocking.
    ///
    /// # Errors
    /// A [`HomeRefusal`]; nothing is stored.
    pub fn attach_photo_in_household(
        &self,
        home: &Household,
        holder: HolderId,
        photo: Vec<u8>,
        now: UnixTime,
    ) -> Result<Receipt, HomeRefusal> {
        self.member_of(home, &holder)?;
        match self.console(ConsoleRequest::AttachPhoto { holder, photo }, now) {
            Response::Declared(r) => Ok(r),
            other => Err(node_refusal(other)),
        }
    }

    /// A member's consent to a named visitor for a window (at most [`VISIT_SECS_MAX`]).
    /// Blocking.
    ///
    /// # Errors
    /// A [`HomeRefusal`]; nothing is stored.
    #[allow(clippy::too_many_arguments)]
    pub fn invite_from_household(
        &self,
        home: &Household,
        host: HolderId,
        visitor_name: String,
        visitor_phone: String,
        from: UnixTime,
        until: UnixTime,
        now: UnixTime,
    ) -> Result<VisitorReceipt, HomeRefusal> {
        self.member_of(home, &host)?;
        if !self.roster.holder_active(&host, now) {
            return Err(HomeRefusal::NoValidCode);
        }
        let in_force = self
            .household_invitations(home, now)?
            .iter()
            .filter(|i| matches!(i.state, InvitationState::Active | InvitationState::Upcoming))
            .count();
        if in_force >= INVITATIONS_ACTIVE_MAX {
            return Err(HomeRefusal::TooManyInvitations);
        }
        let req = ConsoleRequest::InviteVisitor {
            host,
            visitor_name,
            visitor_phone,
            from,
            until,
        };
        match self.console(req, now) {
            Response::Visitor(v) => Ok(v),
            other => Err(node_refusal(other)),
        }
    }

    /// Withdraws the consent of one of this home's invitations. Blocking.
    ///
    /// # Errors
    /// [`HomeRefusal::NoInvitation`] for a code that is not this home's,
    /// [`HomeRefusal::NotInForce`] for one withdrawn already.
    pub fn withdraw_in_household(
        &self,
        home: &Household,
        visitor_code: CredId,
        now: UnixTime,
    ) -> Result<(), HomeRefusal> {
        let ours = self
            .home_people(home)?
            .iter()
            .flat_map(|p| self.roster.visits_of(&p.holder))
            .find(|(id, _)| *id == visitor_code);
        let Some((_, view)) = ours else {
            return Err(HomeRefusal::NoInvitation);
        };
        if view.status != CredStatus::Active {
            return Err(HomeRefusal::NotInForce);
        }
        match self.console(ConsoleRequest::WithdrawConsent { visitor_code }, now) {
            Response::Done(_) => Ok(()),
            other => Err(node_refusal(other)),
        }
    }

    /// The visitors this home's members invited, newest window first (at most
    /// [`INVITATIONS_SHOWN_MAX`]), read from memory.
    ///
    /// # Errors
    /// A [`Refusal`] on storage failure.
    pub fn household_invitations(
        &self,
        home: &Household,
        now: UnixTime,
    ) -> Result<Vec<Invitation>, Refusal> {
        let mut out = Vec::new();
        for p in self.home_people(home)? {
            let host_active = self.roster.holder_active(&p.holder, now);
            for (id, c) in self.roster.visits_of(&p.holder) {
                let Ok(code) = SignedCode::decode(&c.code) else {
                    continue;
                };
                let from = u64::from(code.credential.valid_from);
                let until = u64::from(code.credential.valid_until);
                let state = match c.status {
                    CredStatus::Active if until <= now => InvitationState::Expired,
                    CredStatus::Active if !host_active => InvitationState::HostLapsed,
                    CredStatus::Active if from > now => InvitationState::Upcoming,
                    CredStatus::Active => InvitationState::Active,
                    _ => InvitationState::Withdrawn,
                };
                out.push(Invitation {
                    cred: id,
                    code: code.to_text(),
                    visitor_name: c.display.name.clone(),
                    host: p.holder,
                    host_name: p.form.name.clone(),
                    from,
                    until,
                    state,
                });
            }
        }
        out.sort_by_key(|i| std::cmp::Reverse((i.from, i.until, i.cred)));
        out.truncate(INVITATIONS_SHOWN_MAX);
        Ok(out)
    }

    /// The person, if a member of this home who still lives there.
    fn member_of(&self, home: &Household, holder: &HolderId) -> Result<PersonRecord, HomeRefusal> {
        if !self.households.members(home)?.contains(holder) {
            return Err(HomeRefusal::NotMember);
        }
        match self.roster.person(holder)? {
            Some(p) if p.form.building == home.building && p.form.door == home.door => Ok(p),
            _ => Err(HomeRefusal::NotMember),
        }
    }

    /// The people declared through the home's sessions who still live there.
    fn home_people(&self, home: &Household) -> Result<Vec<PersonRecord>, Refusal> {
        let mut out = Vec::new();
        for holder in self.households.members(home)? {
            match self.roster.person(&holder)? {
                // Re-declared at another home by the office: no longer this home's to see.
                Some(p) if p.form.building == home.building && p.form.door == home.door => {
                    out.push(p);
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// A person declared at another home is not moved from here (that would hand this home
    /// their code).
    fn not_elsewhere(&self, home: &Household, form: &Declaration) -> Result<(), HomeRefusal> {
        let id_hash = self.idhash.hash(form.document_type, &form.document_number);
        match self.roster.person_by_hash(&id_hash)? {
            Some(p) if p.form.building != home.building || p.form.door != home.door => {
                Err(HomeRefusal::OtherHome)
            }
            _ => Ok(()),
        }
    }

    fn add_member(&self, home: &Household, holder: HolderId) {
        if let Err(e) = self.households.add_member(home, holder) {
            // Declared and flushed; only the web's list misses them (the office sees them).
            tracing::warn!(error = %e, holder = %holder, "member not added to its household");
        }
    }

    /// The people declared through a home's sessions who still live there, with their codes.
    ///
    /// # Errors
    /// A [`Refusal`] on storage failure.
    pub fn household_members(
        &self,
        home: &Household,
        now: UnixTime,
    ) -> Result<Vec<Member>, Refusal> {
        let mut out = Vec::new();
        for p in self.home_people(home)? {
            let code = match p.cred {
                Some(id) => self.roster.cred(&id)?.and_then(|c| member_code(&c, now)),
                None => None,
            };
            out.push(Member {
                holder: p.holder,
                name: p.form.name.clone(),
                kind: p.kind,
                outcome: p.review.outcome,
                why: p.review.why.clone(),
                code,
                has_photo: p.has_photo,
            });
        }
        Ok(out)
    }
}

/// The form's home is the session's; its text trimmed as the console's is.
fn at_home(home: &Household, form: &mut Declaration) {
    form.building = home.building.clone();
    form.door = home.door.clone();
    trim_form(form);
}

fn member_code(c: &CredRecord, now: UnixTime) -> Option<(String, UnixTime, CodeState)> {
    let code = SignedCode::decode(&c.code).ok()?;
    let until = u64::from(code.credential.valid_until);
    let state = match &c.status {
        CredStatus::Active if until <= now => CodeState::Expired,
        CredStatus::Active => CodeState::Active,
        CredStatus::Revoked { why, .. } => CodeState::Revoked { why: why.clone() },
        CredStatus::ConsentWithdrawn { .. } => CodeState::Revoked {
            why: menjin_proto::record::WHY_CONSENT_WITHDRAWN.into(),
        },
    };
    Some((code.to_text(), until, state))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{new_node, now, resident};

    struct Two {
        _tmp: tempfile::TempDir,
        node: Arc<Node>,
        a: Household,
        b: Household,
        /// Adults of home a and home b, each declared through their home's session.
        adult_a: Receipt,
        adult_b: Receipt,
    }

    fn two_homes() -> Two {
        let tmp = tempfile::tempdir().unwrap();
        let node = Node::open(&new_node(tmp.path())).unwrap();
        let home = |door: &str| {
            let code = node.households.issue("1", door, now()).unwrap();
            node.open_household(&code).unwrap().unwrap()
        };
        let (a, b) = (home("101"), home("202"));
        let declare = |h: &Household, serial, door: &str| match node.declare_in_household(
            h,
            resident("Adult", "19800101", serial, door),
            now(),
        ) {
            Response::Declared(r) => r,
            other => panic!("{other:?}"),
        };
        let adult_a = declare(&a, 1, "101");
        let adult_b = declare(&b, 2, "202");
        Two {
            _tmp: tmp,
            node,
            a,
            b,
            adult_a,
            adult_b,
        }
    }

    fn photo() -> Vec<u8> {
        menjin_render::qr::qr_png("PHOTO", 4).unwrap()
    }

    #[test]
    fn a_home_declares_its_dependents_only_through_its_own_members() {
        let t = two_homes();
        let child = resident("Child", "20180101", 3, "999");
        // Home a's session naming home b's adult as the proxy: refused, nothing stored.
        let forged = t
            .node
            .declare_for_dependent(&t.a, t.adult_b.holder, child.clone(), now());
        assert!(matches!(forged, Err(HomeRefusal::NotMember)), "{forged:?}");
        assert_eq!(t.node.status().residents, 2);
        let themself = resident("Adult", "19800101", 1, "101");
        let again = t
            .node
            .declare_for_dependent(&t.a, t.adult_a.holder, themself, now());
        assert!(matches!(again, Err(HomeRefusal::Themself)), "{again:?}");

        // The form's door is the session's, whatever it said.
        let dep = t
            .node
            .declare_for_dependent(&t.a, t.adult_a.holder, child, now())
            .unwrap();
        assert_eq!(dep.kind, HolderKind::Dependent);
        assert_eq!(dep.declared_by, Some(t.adult_a.holder));
        let members = t.node.household_members(&t.a, now()).unwrap();
        assert_eq!(members.len(), 2);
        assert!(members.iter().any(|m| m.holder == dep.holder));
        assert!(t.node.household_members(&t.b, now()).unwrap().len() == 1);
        // A child holds a code but is no proxy.
        let by_child = t.node.declare_for_dependent(
            &t.a,
            dep.holder,
            resident("Grandma", "19400101", 5, "101"),
            now(),
        );
        assert!(
            matches!(by_child, Err(HomeRefusal::NotAdult)),
            "{by_child:?}"
        );

        // A photo for a printed pass: for this home's members only.
        let other = t
            .node
            .attach_photo_in_household(&t.a, t.adult_b.holder, photo(), now());
        assert!(matches!(other, Err(HomeRefusal::NotMember)), "{other:?}");
        assert!(t.node.roster.photo(&t.adult_b.holder).unwrap().is_none());
        t.node
            .attach_photo_in_household(&t.a, dep.holder, photo(), now())
            .unwrap();
        let members = t.node.household_members(&t.a, now()).unwrap();
        assert!(
            members
                .iter()
                .any(|m| m.holder == dep.holder && m.has_photo)
        );
    }

    #[test]
    fn a_home_sees_and_withdraws_only_its_own_invitations() {
        let t = two_homes();
        let (from, until) = (now(), now() + 3600);
        let invite = |home: &Household, host: HolderId| {
            t.node.invite_from_household(
                home,
                host,
                "<script>".into(),
                "139 0000 0000".into(),
                from,
                until,
                now(),
            )
        };
        let forged = invite(&t.a, t.adult_b.holder);
        assert!(matches!(forged, Err(HomeRefusal::NotMember)), "{forged:?}");
        let v = invite(&t.a, t.adult_a.holder).unwrap();
        let list = t.node.household_invitations(&t.a, now()).unwrap();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].cred, v.cred);
        assert_eq!(list[0].state, InvitationState::Active);
        assert_eq!(list[0].visitor_name, "<script>");
        assert_eq!(list[0].code, v.code);
        assert!(
            t.node
                .household_invitations(&t.b, now())
                .unwrap()
                .is_empty()
        );

        // Home b cannot withdraw home a's invitation; home a can, once.
        let theirs = t.node.withdraw_in_household(&t.b, v.cred, now());
        assert!(
            matches!(theirs, Err(HomeRefusal::NoInvitation)),
            "{theirs:?}"
        );
        assert_eq!(
            t.node.household_invitations(&t.a, now()).unwrap()[0].state,
            InvitationState::Active
        );
        t.node.withdraw_in_household(&t.a, v.cred, now()).unwrap();
        let again = t.node.withdraw_in_household(&t.a, v.cred, now());
        assert!(matches!(again, Err(HomeRefusal::NotInForce)), "{again:?}");
        let list = t.node.household_invitations(&t.a, now()).unwrap();
        assert_eq!(list[0].state, InvitationState::Withdrawn);
        // A resident's own code is no invitation.
        let own = t.adult_a.cred.unwrap();
        let own = t.node.withdraw_in_household(&t.a, own, now());
        assert!(matches!(own, Err(HomeRefusal::NoInvitation)), "{own:?}");

        // At most INVITATIONS_ACTIVE_MAX in force at once.
        for _ in 0..INVITATIONS_ACTIVE_MAX {
            invite(&t.a, t.adult_a.holder).unwrap();
        }
        let more = invite(&t.a, t.adult_a.holder);
        assert!(
            matches!(more, Err(HomeRefusal::TooManyInvitations)),
            "{more:?}"
        );
    }
}
