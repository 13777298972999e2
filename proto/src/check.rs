//! The gate check as one pipeline: from what a gate scanned (code, temperature, plate, lane
//! direction) and what the decider trusts, to the verdict, the anti-passback flag and the
//! event to log. The node (online) and a gate deciding alone (offline) both call [`check`],
//! so their answers cannot drift apart; what they know differs, and comes in as data:
//!
//! | | node | gate alone |
//! |---|---|---|
//! | signature checked against | its own certificate ([`Issuer::Own`]) | the cached ones (the current, and the one before a rekey), each inside its validity window ([`Issuer::Cached`]) |
//! | records of codes | every code it issued ([`Known::Issued`], [`Known::NotIssued`]) | none ([`Known::Unrecorded`]): the signature vouches; revocations and consents from its lists |
//! | visitors | the consent on the record | a cached consent, and not degraded ([`Mode::Offline`]) |
//!
//! A code whose bytes are identical to the ones the node issued under its id skips the
//! signature check (the node signed it); a validly signed code the node has no record of is
//! `unknown_code`, which a gate cannot know.
//!
//! No IO, no clock: the time is an argument, and the decider's records and anti-passback
//! memory are behind [`Trust`].

use crate::credential::{CredId, Credential, HolderId, HolderKind, SignedCode};
use crate::rule::{self, Facts, Reason, Verdict};
use crate::wire::{Direction, GateEvent, OfflineMark, PLATE_LEN_MAX};
use crate::{CommunityId, KeyId, NodeCert, UnixTime};

/// What the gate scanned and measured, for one person.
#[derive(Clone, Copy, Debug)]
pub struct Scan<'a> {
    /// The code's text form, as the scanner read it.
    pub code: &'a str,
    /// Body temperature in tenths of a degree Celsius (365 is 36.5 °C); outside
    /// [`rule::TEMPERATURE_DC_MIN`]..=[`rule::TEMPERATURE_DC_MAX`] the check is refused as a
    /// thermometer error.
    pub temperature_dc: i16,
    /// The vehicle's plate, when the person is in one.
    pub plate: Option<&'a str>,
    /// The lane: in or out of the compound.
    pub direction: Direction,
    /// The gate that scanned, as enrolled at the node; copied into the logged event.
    pub gate_id: &'a str,
}

/// The certificate a code's signature is checked against.
#[derive(Clone, Copy, Debug)]
pub enum Issuer<'a> {
    /// The deciding node's own certificate (its identity: not re-checked per code).
    Own(&'a NodeCert),
    /// The node's certificates as a gate cached them (checked against the district root when
    /// they arrived: the current one, and the one before the last rekey while its codes may
    /// be in force), each trusted only inside its own validity window. Empty: no trust data.
    Cached {
        /// The certificates.
        certs: &'a [NodeCert],
        /// Ids of node keys the district revoked: a code one of them signed is refused
        /// (`issuer_revoked`) whatever certificate is cached for it.
        revoked: &'a [KeyId],
    },
}

impl<'a> Issuer<'a> {
    /// The certificate to verify a code signed by `key` against at `now`, if any.
    fn at(self, key: KeyId, now: UnixTime) -> Option<&'a NodeCert> {
        match self {
            Issuer::Own(cert) => Some(cert),
            Issuer::Cached { certs, revoked } => certs.iter().find(|cert| {
                cert.key_id() == key
                    && !revoked.contains(&key)
                    && (cert.not_before..=cert.not_after).contains(&now)
            }),
        }
    }

    /// Whether the district revoked the key `key` names.
    fn revoked(self, key: KeyId) -> bool {
        matches!(self, Issuer::Cached { revoked, .. } if revoked.contains(&key))
    }
}

/// Who decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The node.
    Online,
    /// A gate alone; `degraded`: it has not heard from its node for longer than its bound,
    /// so no visitor's consent is trusted.
    Offline {
        /// Set by the gate from its clock bound; visitors are refused while it holds.
        degraded: bool,
    },
}

/// What the decider holds besides its knowledge of single codes.
#[derive(Clone, Copy, Debug)]
pub struct Context<'a> {
    /// The decider's community: a code of any other is `wrong_community`.
    pub community: CommunityId,
    /// The certificate signatures are checked against.
    pub issuer: Issuer<'a>,
    /// Node or gate alone; marks the logged event as offline.
    pub mode: Mode,
    /// The community is locked down (as the decider enforces it).
    pub lockdown: bool,
    /// During a lockdown, residents may still go out.
    pub residents_may_leave: bool,
    /// Flag a resident let in twice without going out in between.
    pub anti_passback: bool,
}

/// What the decider knows about one credential id.
#[derive(Clone, Copy, Debug)]
pub enum Known<'a> {
    /// The node issued a code under this id (its roster).
    Issued(Issued<'a>),
    /// The node holds the record of every code it issued, and none under this id.
    NotIssued,
    /// The decider keeps no records of codes (a gate): what it knows is on its lists.
    Unrecorded {
        /// On the revocation list.
        revoked: bool,
        /// On the list of visitor codes whose consent is in force.
        consent: bool,
    },
}

/// The node's record of a code it issued.
#[derive(Clone, Copy, Debug)]
pub struct Issued<'a> {
    /// The exact bytes issued: a code with other bytes under this id is refused.
    pub code: &'a [u8],
    /// The holder kind on the node's record (it outranks the one in the code).
    pub kind: HolderKind,
    /// The holder on the node's record.
    pub holder: HolderId,
    /// The code is revoked; a withdrawn visitor consent shows in `consent` instead.
    pub revoked: bool,
    /// For visitor codes: the consent is in force (not withdrawn, the host still holding a
    /// code).
    pub consent: bool,
}

/// The decider's knowledge of codes and its anti-passback memory.
pub trait Trust {
    /// What is known about `id`; called at most once per check, after the code parsed.
    fn lookup(&mut self, id: &CredId) -> Known<'_>;

    /// Records `direction` as `holder`'s latest at this gate and returns the one before.
    /// Called only with anti-passback on, for a resident or dependent let through.
    fn swap_direction(&mut self, holder: HolderId, direction: Direction) -> Option<Direction>;
}

/// What a check gives its caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    /// Allow or deny, with the reason and the fever flag.
    pub verdict: Verdict,
    /// Anti-passback: a resident let in twice without going out (still let in).
    pub passback: bool,
    /// The event to log: `seq` 0 (numbered by the log); for a gate alone, `gate_seq` 0
    /// (numbered by its buffer).
    pub event: GateEvent,
    /// The code, when it checked out (signature or issued bytes, community, window), revoked
    /// or not: what the guard's screen shows of the holder.
    pub credential: Option<Credential>,
}

/// A request refused before deciding: nothing is logged, the guard measures or types again.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// The reading (tenths of °C) is outside [`rule::TEMPERATURE_DC_MIN`] to
    /// [`rule::TEMPERATURE_DC_MAX`]: a thermometer error, not a person.
    #[error("temperature {:.1} °C is outside 30.0 to 45.0: measure again", f32::from(*.0) / 10.0)]
    Temperature(i16),
    /// The plate is blank or longer than [`PLATE_LEN_MAX`] bytes.
    #[error("plate: 1 to {max} bytes", max = PLATE_LEN_MAX)]
    Plate,
}

/// An event no check could have logged: a gate's upload is held to what the pipeline writes.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// A temperature or plate the check refuses before deciding.
    #[error("event: {0}")]
    Input(InputError),
    /// The fever flag disagrees with the reading ([`rule::FEVER_DC`] or more is a fever).
    #[error("event: fever {fever} at {temperature_dc} tenths of a degree")]
    Fever {
        /// The flag as sent.
        fever: bool,
        /// The reading as sent.
        temperature_dc: i16,
    },
    /// `allowed` disagrees with the reason (the lock opens exactly for [`Reason::Ok`]).
    #[error("event: allowed {allowed} with reason {}", .reason.as_str())]
    Verdict {
        /// As sent.
        allowed: bool,
        /// As sent.
        reason: Reason,
    },
    /// The code's id, its holder and kind are logged together or not at all.
    #[error("event: code, holder and kind go together")]
    Holder,
}

/// Checks that `event` is one this pipeline could have produced, field by field: what a node
/// applies to the events a gate decided alone before it stores them (and streams them on).
///
/// # Errors
/// [`EventError`] naming the first field that no check would have written.
pub fn check_event(event: &GateEvent) -> Result<(), EventError> {
    refuse_readings(event.temperature_dc, event.plate.as_deref()).map_err(EventError::Input)?;
    if event.fever != (event.temperature_dc >= rule::FEVER_DC) {
        return Err(EventError::Fever {
            fever: event.fever,
            temperature_dc: event.temperature_dc,
        });
    }
    if event.allowed != (event.reason == Reason::Ok) {
        return Err(EventError::Verdict {
            allowed: event.allowed,
            reason: event.reason,
        });
    }
    let parts = [
        event.cred.is_some(),
        event.holder.is_some(),
        event.kind.is_some(),
    ];
    if parts.iter().any(|p| *p != parts[0]) {
        return Err(EventError::Holder);
    }
    Ok(())
}

/// Checks one person at one gate at `now_ms` (the decider's clock, milliseconds).
///
/// # Errors
/// [`InputError`] for a temperature outside the thermometer's range or a plate that is empty
/// or too long.
pub fn check<T: Trust + ?Sized>(
    scan: &Scan<'_>,
    now_ms: u64,
    ctx: &Context<'_>,
    trust: &mut T,
) -> Result<Checked, InputError> {
    refuse_input(scan)?;
    let judged = judge(scan.code, now_ms / 1000, ctx, trust);
    let accepted = judged.as_ref().ok();
    let degraded = matches!(ctx.mode, Mode::Offline { degraded: true });
    let verdict = rule::decide(&Facts {
        code: judged.as_ref().map(|a| a.kind).map_err(|r| *r),
        revoked: accepted.is_some_and(|a| a.revoked),
        consent_active: accepted
            .filter(|a| a.kind == HolderKind::Visitor)
            .map(|a| a.consent && !degraded),
        temperature_dc: scan.temperature_dc,
        in_vehicle: scan.plate.is_some(),
        leaving: scan.direction == Direction::Out,
        lockdown: ctx.lockdown,
        residents_may_leave: ctx.residents_may_leave,
    });
    let passback = ctx.anti_passback
        && verdict.allowed
        && accepted.is_some_and(|a| {
            matches!(a.kind, HolderKind::Resident | HolderKind::Dependent)
                && trust.swap_direction(a.holder, scan.direction) == Some(Direction::In)
                && scan.direction == Direction::In
        });
    let event = GateEvent {
        seq: 0,
        time_ms: now_ms,
        gate: scan.gate_id.to_string(),
        direction: scan.direction,
        allowed: verdict.allowed,
        reason: verdict.reason,
        fever: verdict.fever,
        temperature_dc: scan.temperature_dc,
        cred: accepted.map(|a| a.credential.id),
        holder: accepted.map(|a| a.holder),
        kind: accepted.map(|a| a.kind),
        plate: scan.plate.map(str::to_string),
        offline: match ctx.mode {
            Mode::Online => None,
            Mode::Offline { degraded } => Some(OfflineMark {
                gate_seq: 0,
                decided_ms: now_ms,
                degraded,
            }),
        },
        passback,
    };
    Ok(Checked {
        verdict,
        passback,
        event,
        credential: judged.ok().map(|a| a.credential),
    })
}

fn refuse_input(scan: &Scan<'_>) -> Result<(), InputError> {
    refuse_readings(scan.temperature_dc, scan.plate)
}

/// The readings a check refuses before deciding: one rule for scans and uploaded events.
fn refuse_readings(temperature_dc: i16, plate: Option<&str>) -> Result<(), InputError> {
    if !(rule::TEMPERATURE_DC_MIN..=rule::TEMPERATURE_DC_MAX).contains(&temperature_dc) {
        return Err(InputError::Temperature(temperature_dc));
    }
    if let Some(plate) = plate
        && (plate.trim().is_empty() || plate.len() > PLATE_LEN_MAX)
    {
        return Err(InputError::Plate);
    }
    Ok(())
}

/// A code that checked out, and what the decider knows of it.
struct Accepted {
    credential: Credential,
    kind: HolderKind,
    holder: HolderId,
    revoked: bool,
    consent: bool,
}

/// The code's own checks, then the decider's record of it.
fn judge<T: Trust + ?Sized>(
    text: &str,
    now: UnixTime,
    ctx: &Context<'_>,
    trust: &mut T,
) -> Result<Accepted, Reason> {
    let code = SignedCode::from_text(text).map_err(|e| e.reason())?;
    let known = trust.lookup(&code.credential.id);
    // The node signed the bytes it issued: identical bytes need no signature check.
    let issued_here = matches!(&known, Known::Issued(i) if i.code == code.as_bytes());
    if issued_here {
        code.check_context(ctx.community, now)?;
    } else {
        // A code of another community is refused as such whoever signed it (`verify`).
        if code.credential.community == ctx.community && ctx.issuer.revoked(code.credential.issuer)
        {
            return Err(Reason::IssuerRevoked);
        }
        code.verify(
            ctx.issuer.at(code.credential.issuer, now),
            ctx.community,
            now,
        )?;
    }
    let (kind, holder, revoked, consent) = match known {
        Known::NotIssued => return Err(Reason::UnknownCode),
        // Validly signed, yet not what the node issued under that id.
        Known::Issued(_) if !issued_here => return Err(Reason::BadSignature),
        Known::Issued(i) => (i.kind, i.holder, i.revoked, i.consent),
        Known::Unrecorded { revoked, consent } => (
            code.credential.kind,
            code.credential.holder,
            revoked,
            consent,
        ),
    };
    Ok(Accepted {
        credential: code.credential,
        kind,
        holder,
        revoked,
        consent,
    })
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use ed25519_dalek::SigningKey;

    use super::*;
    use crate::KeyId;

    const COMMUNITY: CommunityId = 7;
    const NOW: UnixTime = 1_700_000_000;
    const NOW_MS: u64 = NOW * 1000 + 250;

    /// A node certificate, its key, and codes it signs.
    struct Node {
        cert: NodeCert,
        key: SigningKey,
    }

    impl Node {
        fn new() -> Node {
            Node::with_key(2)
        }

        /// A node of the same district and community with key seed `seed`.
        fn with_key(seed: u8) -> Node {
            let root = SigningKey::from_bytes(&[1; 32]);
            let key = SigningKey::from_bytes(&[seed; 32]);
            let cert = NodeCert::issue(
                &root,
                COMMUNITY,
                "seven",
                key.verifying_key(),
                NOW - 86_400,
                NOW + 86_400,
            );
            Node { cert, key }
        }

        fn code(&self, kind: HolderKind, id: u8) -> SignedCode {
            credential(kind, id, &self.key).sign(&self.key)
        }
    }

    fn credential(kind: HolderKind, id: u8, key: &SigningKey) -> Credential {
        Credential {
            kind,
            id: CredId([id; 8]),
            community: COMMUNITY,
            holder: HolderId([id; 8]),
            valid_from: (NOW - 3600) as u32,
            valid_until: (NOW + 3600) as u32,
            issuer: KeyId::of(&key.verifying_key()),
            building: "1".into(),
            door: "101".into(),
        }
    }

    /// A node's record of one code: bytes, kind, revoked, consent in force.
    type Record = (Vec<u8>, HolderKind, bool, bool);

    /// The node's records, or a gate's lists, and a passback memory.
    #[derive(Default)]
    struct Table {
        /// `None`: the decider keeps no records (a gate).
        issued: Option<HashMap<CredId, Record>>,
        revoked: Vec<CredId>,
        visitors: Vec<CredId>,
        last: HashMap<HolderId, Direction>,
        lookups: u32,
    }

    impl Table {
        fn node(codes: &[(&SignedCode, bool, bool)]) -> Table {
            let issued = codes
                .iter()
                .map(|(c, revoked, consent)| {
                    let id = c.credential.id;
                    (
                        id,
                        (c.as_bytes().to_vec(), c.credential.kind, *revoked, *consent),
                    )
                })
                .collect();
            Table {
                issued: Some(issued),
                ..Table::default()
            }
        }
    }

    impl Trust for Table {
        fn lookup(&mut self, id: &CredId) -> Known<'_> {
            self.lookups += 1;
            let Some(issued) = &self.issued else {
                return Known::Unrecorded {
                    revoked: self.revoked.contains(id),
                    consent: self.visitors.contains(id),
                };
            };
            match issued.get(id) {
                None => Known::NotIssued,
                Some((code, kind, revoked, consent)) => Known::Issued(Issued {
                    code,
                    kind: *kind,
                    holder: HolderId(id.0),
                    revoked: *revoked,
                    consent: *consent,
                }),
            }
        }

        fn swap_direction(&mut self, holder: HolderId, direction: Direction) -> Option<Direction> {
            self.last.insert(holder, direction)
        }
    }

    fn scan(code: &str) -> Scan<'_> {
        Scan {
            code,
            temperature_dc: 365,
            plate: None,
            direction: Direction::In,
            gate_id: "lane-1",
        }
    }

    fn online(node: &Node) -> Context<'_> {
        Context {
            community: COMMUNITY,
            issuer: Issuer::Own(&node.cert),
            mode: Mode::Online,
            lockdown: false,
            residents_may_leave: false,
            anti_passback: false,
        }
    }

    fn offline(node: &Node, degraded: bool) -> Context<'_> {
        Context {
            issuer: Issuer::Cached {
                certs: std::slice::from_ref(&node.cert),
                revoked: &[],
            },
            mode: Mode::Offline { degraded },
            ..online(node)
        }
    }

    fn reason(scan: &Scan<'_>, ctx: &Context<'_>, trust: &mut Table) -> Reason {
        check(scan, NOW_MS, ctx, trust).unwrap().verdict.reason
    }

    /// What the pipeline logs passes `check_event`, fever, refusal and a bad code included;
    /// each field no check writes fails it.
    #[test]
    fn check_event_accepts_what_the_pipeline_logs_and_nothing_else() {
        let node = Node::new();
        let code = node.code(HolderKind::Resident, 1).to_text();
        for (text, temperature_dc) in [(code.as_str(), 365), (code.as_str(), 390), ("MJ:??", 365)] {
            let mut s = scan(text);
            s.temperature_dc = temperature_dc;
            let c = check(&s, NOW_MS, &offline(&node, false), &mut Table::default()).unwrap();
            assert_eq!(check_event(&c.event), Ok(()), "{text} at {temperature_dc}");
        }
        let good = check(
            &scan(&code),
            NOW_MS,
            &offline(&node, false),
            &mut Table::default(),
        )
        .unwrap()
        .event;
        let spoiled: [fn(&mut GateEvent); 5] = [
            |e| e.plate = Some("A".repeat(PLATE_LEN_MAX + 1)),
            |e| e.temperature_dc = rule::TEMPERATURE_DC_MAX + 1,
            |e| e.fever = true,
            |e| e.allowed = false,
            |e| e.kind = None,
        ];
        for spoil in spoiled {
            let mut e = good.clone();
            spoil(&mut e);
            assert!(check_event(&e).is_err(), "{e:?}");
        }
    }

    #[test]
    fn an_issued_resident_is_let_in_online_and_offline_with_the_same_event() {
        let node = Node::new();
        let code = node.code(HolderKind::Resident, 1);
        let text = code.to_text();
        let on = check(
            &scan(&text),
            NOW_MS,
            &online(&node),
            &mut Table::node(&[(&code, false, false)]),
        )
        .unwrap();
        let off = check(
            &scan(&text),
            NOW_MS,
            &offline(&node, false),
            &mut Table::default(),
        )
        .unwrap();
        assert_eq!(
            on.verdict,
            Verdict {
                allowed: true,
                reason: Reason::Ok,
                fever: false
            }
        );
        assert_eq!(on.credential.as_ref(), Some(&code.credential));
        let e = &on.event;
        assert_eq!((e.seq, e.time_ms, e.gate.as_str()), (0, NOW_MS, "lane-1"));
        assert_eq!(e.cred, Some(code.credential.id));
        assert_eq!(e.holder, Some(code.credential.holder));
        assert_eq!(e.kind, Some(HolderKind::Resident));
        assert_eq!(e.offline, None);
        let mark = OfflineMark {
            gate_seq: 0,
            decided_ms: NOW_MS,
            degraded: false,
        };
        assert_eq!(off.event.offline, Some(mark));
        assert_eq!(
            GateEvent {
                offline: None,
                ..off.event.clone()
            },
            on.event
        );
    }

    #[test]
    fn a_temperature_outside_the_thermometer_range_is_refused_before_deciding() {
        let node = Node::new();
        let mut t = Table::default();
        for dc in [rule::TEMPERATURE_DC_MIN - 1, rule::TEMPERATURE_DC_MAX + 1] {
            let s = Scan {
                temperature_dc: dc,
                ..scan("MJ:whatever")
            };
            let e = check(&s, NOW_MS, &offline(&node, false), &mut t).unwrap_err();
            assert_eq!(e, InputError::Temperature(dc));
        }
        assert_eq!(
            InputError::Temperature(451).to_string(),
            "temperature 45.1 °C is outside 30.0 to 45.0: measure again"
        );
        assert_eq!(t.lookups, 0, "nothing looked up");
    }

    #[test]
    fn an_empty_or_long_plate_is_refused_online_and_offline() {
        let node = Node::new();
        let long = "粤".repeat(6); // 18 bytes
        for plate in ["", "  ", long.as_str()] {
            let s = Scan {
                plate: Some(plate),
                ..scan("MJ:whatever")
            };
            for ctx in [online(&node), offline(&node, false)] {
                let e = check(&s, NOW_MS, &ctx, &mut Table::default()).unwrap_err();
                assert_eq!(e, InputError::Plate);
            }
        }
        assert_eq!(InputError::Plate.to_string(), "plate: 1 to 16 bytes");
        let s = Scan {
            plate: Some("粤B12345"),
            ..scan("HTTPS://EXAMPLE.COM")
        };
        assert!(check(&s, NOW_MS, &online(&node), &mut Table::default()).is_ok());
    }

    #[test]
    fn a_code_that_does_not_parse_is_malformed_and_nothing_is_looked_up() {
        let node = Node::new();
        let mut t = Table::node(&[]);
        let c = check(&scan("HTTPS://EXAMPLE.COM"), NOW_MS, &online(&node), &mut t).unwrap();
        assert_eq!(c.verdict.reason, Reason::Malformed);
        assert_eq!(
            (c.event.cred, c.event.holder, c.event.kind),
            (None, None, None)
        );
        assert_eq!(c.credential, None);
        assert_eq!(t.lookups, 0);
    }

    #[test]
    fn identical_issued_bytes_skip_the_signature_check() {
        let node = Node::new();
        // A certificate for another key: only a code checked by its bytes passes.
        let mut other = node.cert.clone();
        other.node_key = SigningKey::from_bytes(&[9; 32]).verifying_key();
        let code = node.code(HolderKind::Staff, 1);
        let mut t = Table::node(&[(&code, false, false)]);
        assert_eq!(
            reason(
                &scan(&code.to_text()),
                &Context {
                    issuer: Issuer::Own(&other),
                    ..online(&node)
                },
                &mut t
            ),
            Reason::Ok
        );
        // Offline there are no issued bytes: the signature decides.
        assert_eq!(
            reason(
                &scan(&code.to_text()),
                &Context {
                    issuer: Issuer::Cached {
                        certs: std::slice::from_ref(&other),
                        revoked: &[],
                    },
                    ..offline(&node, false)
                },
                &mut Table::default()
            ),
            Reason::UnknownIssuer
        );
    }

    #[test]
    fn a_validly_signed_code_the_node_has_no_record_of_is_unknown_online_only() {
        let node = Node::new();
        let code = node.code(HolderKind::Resident, 3);
        let text = code.to_text();
        let mut t = Table::node(&[]);
        let c = check(&scan(&text), NOW_MS, &online(&node), &mut t).unwrap();
        assert_eq!(c.verdict.reason, Reason::UnknownCode);
        assert_eq!((c.event.cred, c.credential), (None, None));
        // A gate cannot know: the signature vouches for it.
        assert_eq!(
            reason(&scan(&text), &offline(&node, false), &mut Table::default()),
            Reason::Ok
        );
    }

    #[test]
    fn other_bytes_under_an_issued_id_are_a_forgery_even_when_signed() {
        let node = Node::new();
        let issued = node.code(HolderKind::Resident, 4);
        let mut re_signed = issued.credential.clone();
        re_signed.door = "102".into();
        let re_signed = re_signed.sign(&node.key);
        let mut t = Table::node(&[(&issued, false, false)]);
        assert_eq!(
            reason(&scan(&re_signed.to_text()), &online(&node), &mut t),
            Reason::BadSignature
        );
    }

    #[test]
    fn a_tampered_code_is_a_bad_signature_online_and_offline() {
        let node = Node::new();
        let code = node.code(HolderKind::Resident, 5);
        let mut bytes = code.as_bytes().to_vec();
        let at = bytes.len() - 65;
        bytes[at] ^= 1;
        let text = crate::credential::encode_text(&bytes);
        let mut t = Table::node(&[(&code, false, false)]);
        assert_eq!(
            reason(&scan(&text), &online(&node), &mut t),
            Reason::BadSignature
        );
        assert_eq!(
            reason(&scan(&text), &offline(&node, false), &mut Table::default()),
            Reason::BadSignature
        );
    }

    #[test]
    fn window_community_and_issuer_are_checked_online_and_offline() {
        let node = Node::new();
        let stranger = SigningKey::from_bytes(&[3; 32]);
        let mut expired = credential(HolderKind::Resident, 6, &node.key);
        expired.valid_until = (NOW - 1) as u32;
        let mut early = credential(HolderKind::Visitor, 7, &node.key);
        early.valid_from = (NOW + 1) as u32;
        let mut foreign = credential(HolderKind::Resident, 8, &stranger);
        foreign.community = COMMUNITY + 1;
        let unknown = credential(HolderKind::Resident, 9, &stranger);
        let cases = [
            (expired.sign(&node.key), Reason::Expired),
            (early.sign(&node.key), Reason::NotYetValid),
            (foreign.sign(&stranger), Reason::WrongCommunity),
            (unknown.sign(&stranger), Reason::UnknownIssuer),
        ];
        for (code, want) in &cases {
            let text = code.to_text();
            // Online, issued (identical bytes) or not, the window and community hold.
            let issued = [(code, false, true)];
            let mut t = Table::node(if *want == Reason::UnknownIssuer {
                &[]
            } else {
                &issued
            });
            assert_eq!(reason(&scan(&text), &online(&node), &mut t), *want);
            let mut t = Table::default();
            assert_eq!(reason(&scan(&text), &offline(&node, false), &mut t), *want);
        }
    }

    #[test]
    fn a_gate_trusts_the_certificate_before_a_rekey_and_none_older() {
        let (older, previous, current) = (Node::with_key(3), Node::with_key(4), Node::new());
        let certs = [current.cert.clone(), previous.cert.clone()];
        let ctx = Context {
            issuer: Issuer::Cached {
                certs: &certs,
                revoked: &[],
            },
            ..offline(&current, false)
        };
        for (signer, want) in [
            (&current, Reason::Ok),
            (&previous, Reason::Ok),
            (&older, Reason::UnknownIssuer),
        ] {
            let text = signer.code(HolderKind::Resident, 10).to_text();
            assert_eq!(reason(&scan(&text), &ctx, &mut Table::default()), want);
        }
    }

    /// Issue 12, defect 8: a node key the district revoked vouches for nothing at a gate
    /// alone, current or previous, and the guard is told why.
    #[test]
    fn a_gate_refuses_codes_of_a_revoked_node_key_with_its_reason() {
        let (previous, current) = (Node::with_key(4), Node::new());
        let certs = [current.cert.clone(), previous.cert.clone()];
        let revoked = [previous.cert.key_id()];
        let ctx = Context {
            issuer: Issuer::Cached {
                certs: &certs,
                revoked: &revoked,
            },
            ..offline(&current, false)
        };
        for (signer, want) in [(&current, Reason::Ok), (&previous, Reason::IssuerRevoked)] {
            let text = signer.code(HolderKind::Resident, 10).to_text();
            assert_eq!(reason(&scan(&text), &ctx, &mut Table::default()), want);
        }
        // A code of another community stays `wrong_community`, whoever signed it.
        let mut foreign = credential(HolderKind::Resident, 11, &previous.key);
        foreign.community = COMMUNITY + 1;
        let text = foreign.sign(&previous.key).to_text();
        assert_eq!(
            reason(&scan(&text), &ctx, &mut Table::default()),
            Reason::WrongCommunity
        );
    }

    #[test]
    fn a_cached_certificate_outside_its_window_vouches_for_nothing() {
        let node = Node::new();
        let code = node.code(HolderKind::Resident, 10);
        let text = code.to_text();
        let mut late = node.cert.clone();
        late.not_before = NOW + 1;
        let ctx = Context {
            issuer: Issuer::Cached {
                certs: std::slice::from_ref(&late),
                revoked: &[],
            },
            ..offline(&node, false)
        };
        assert_eq!(
            reason(&scan(&text), &ctx, &mut Table::default()),
            Reason::UnknownIssuer
        );
        let ctx = Context {
            issuer: Issuer::Cached {
                certs: &[],
                revoked: &[],
            },
            ..offline(&node, false)
        };
        assert_eq!(
            reason(&scan(&text), &ctx, &mut Table::default()),
            Reason::UnknownIssuer
        );
        // The node's own certificate is its identity: not re-checked per code.
        let ctx = Context {
            issuer: Issuer::Own(&late),
            ..online(&node)
        };
        assert_eq!(
            reason(&scan(&text), &ctx, &mut Table::node(&[])),
            Reason::UnknownCode
        );
    }

    #[test]
    fn a_revoked_code_is_refused_and_still_shows_its_holder() {
        let node = Node::new();
        let code = node.code(HolderKind::Resident, 11);
        let text = code.to_text();
        let mut t = Table::node(&[(&code, true, false)]);
        let c = check(&scan(&text), NOW_MS, &online(&node), &mut t).unwrap();
        assert_eq!(c.verdict.reason, Reason::Revoked);
        assert_eq!(c.event.holder, Some(code.credential.holder));
        assert_eq!(c.credential.as_ref(), Some(&code.credential));
        let mut t = Table {
            revoked: vec![code.credential.id],
            ..Table::default()
        };
        let c = check(&scan(&text), NOW_MS, &offline(&node, false), &mut t).unwrap();
        assert_eq!(c.verdict.reason, Reason::Revoked);
        assert_eq!(c.event.holder, Some(code.credential.holder));
    }

    #[test]
    fn a_visitor_needs_consent_and_offline_no_degraded_mode() {
        let node = Node::new();
        let code = node.code(HolderKind::Visitor, 12);
        let text = code.to_text();
        let on = |consent| {
            reason(
                &scan(&text),
                &online(&node),
                &mut Table::node(&[(&code, false, consent)]),
            )
        };
        assert_eq!(on(true), Reason::Ok);
        assert_eq!(on(false), Reason::NoConsent);
        let listed = || Table {
            visitors: vec![code.credential.id],
            ..Table::default()
        };
        assert_eq!(
            reason(&scan(&text), &offline(&node, false), &mut listed()),
            Reason::Ok
        );
        assert_eq!(
            reason(&scan(&text), &offline(&node, false), &mut Table::default()),
            Reason::NoConsent
        );
        let c = check(&scan(&text), NOW_MS, &offline(&node, true), &mut listed()).unwrap();
        assert_eq!(c.verdict.reason, Reason::NoConsent);
        assert_eq!(c.event.offline.map(|m| m.degraded), Some(true));
        // Degraded mode bars visitors only.
        let resident = node.code(HolderKind::Resident, 13).to_text();
        assert_eq!(
            reason(
                &scan(&resident),
                &offline(&node, true),
                &mut Table::default()
            ),
            Reason::Ok
        );
    }

    #[test]
    fn vehicles_fever_and_lockdown_reach_the_rule() {
        let node = Node::new();
        let visitor = node.code(HolderKind::Visitor, 14);
        let resident = node.code(HolderKind::Resident, 15);
        let staff = node.code(HolderKind::Staff, 16);
        let mut t = Table::node(&[
            (&visitor, false, true),
            (&resident, false, false),
            (&staff, false, false),
        ]);
        let (v, r, s) = (visitor.to_text(), resident.to_text(), staff.to_text());
        let car = |code| Scan {
            plate: Some("粤B12345"),
            ..scan(code)
        };
        let out = |code| Scan {
            direction: Direction::Out,
            ..scan(code)
        };
        let ctx = online(&node);
        assert_eq!(reason(&car(&v), &ctx, &mut t), Reason::VehicleBarred);
        assert_eq!(reason(&car(&r), &ctx, &mut t), Reason::Ok);
        let hot = Scan {
            temperature_dc: 381,
            ..scan(&r)
        };
        let c = check(&hot, NOW_MS, &ctx, &mut t).unwrap();
        assert_eq!((c.verdict.reason, c.verdict.fever), (Reason::Fever, true));
        let locked = Context {
            lockdown: true,
            ..ctx
        };
        assert_eq!(reason(&scan(&v), &locked, &mut t), Reason::Lockdown);
        assert_eq!(reason(&scan(&r), &locked, &mut t), Reason::Ok);
        assert_eq!(reason(&out(&r), &locked, &mut t), Reason::Lockdown);
        assert_eq!(reason(&out(&s), &locked, &mut t), Reason::Ok);
        assert_eq!(reason(&car(&r), &locked, &mut t), Reason::Lockdown);
        let may_leave = Context {
            residents_may_leave: true,
            ..locked
        };
        assert_eq!(reason(&out(&r), &may_leave, &mut t), Reason::Ok);
    }

    #[test]
    fn anti_passback_flags_a_second_entry_without_going_out() {
        let node = Node::new();
        let resident = node.code(HolderKind::Resident, 17);
        let staff = node.code(HolderKind::Staff, 18);
        let text = resident.to_text();
        let ctx = Context {
            anti_passback: true,
            ..offline(&node, false)
        };
        let mut t = Table::default();
        let mut flags = Vec::new();
        for direction in [Direction::In, Direction::In, Direction::Out, Direction::In] {
            let s = Scan {
                direction,
                ..scan(&text)
            };
            let c = check(&s, NOW_MS, &ctx, &mut t).unwrap();
            assert_eq!(c.event.passback, c.passback);
            flags.push(c.passback);
        }
        assert_eq!(flags, [false, true, false, false]);
        // Staff are not tracked; refused people are not either; nor with the setting off.
        let s = staff.to_text();
        for _ in 0..2 {
            assert!(!check(&scan(&s), NOW_MS, &ctx, &mut t).unwrap().passback);
        }
        let hot = Scan {
            temperature_dc: 390,
            ..scan(&text)
        };
        assert!(!check(&hot, NOW_MS, &ctx, &mut t).unwrap().passback);
        let off = Context {
            anti_passback: false,
            ..ctx
        };
        assert!(!check(&scan(&text), NOW_MS, &off, &mut t).unwrap().passback);
        assert_eq!(
            t.last.len(),
            1,
            "only the resident let through: {:?}",
            t.last
        );
    }
}
