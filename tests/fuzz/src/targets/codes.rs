//! Codes people carry (QR text, their bytes, household codes) and the certificates nodes
//! present.

use menjin_community::households::HouseholdCode;
use menjin_net::tls;
use menjin_proto::SignedCode;
use menjin_proto::cert::NodeCert;

use crate::fixtures;

/// A scanned text: `SignedCode::from_text`; what parses prints back to itself (base45 is
/// canonical), and the signature check against the fixture node runs without panicking.
pub fn code_text(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(code) = SignedCode::from_text(text) else {
        return;
    };
    let again = SignedCode::from_text(&code.to_text()).expect("a parsed code's text parses");
    assert_eq!(again, code, "text round trip");
    let cert = fixtures::node_cert();
    let _ = code.verify(Some(&cert), fixtures::COMMUNITY, fixtures::NOW);
    let _ = code.check_context(code.credential.community, fixtures::NOW);
}

/// A code's bytes: `SignedCode::decode`; the decoded code keeps exactly its bytes.
pub fn code_bytes(data: &[u8]) {
    let Ok(code) = SignedCode::decode(data) else {
        return;
    };
    assert_eq!(code.as_bytes(), data, "a code keeps its bytes");
    let again = SignedCode::from_text(&code.to_text()).expect("a decoded code's text parses");
    assert_eq!(again, code, "text round trip");
}

/// What a resident types on the household page: `HouseholdCode::parse`.
pub fn household_code(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(code) = HouseholdCode::parse(text) {
        let again = HouseholdCode::parse(&code.to_text()).expect("a code's text parses");
        assert_eq!(again.to_text(), code.to_text(), "household code round trip");
    }
}

/// A node certificate (in a peer's TLS certificate, the trust feed, `node.cert`):
/// `NodeCert::decode` is exact (it refuses trailing bytes), so encoding gives the input back.
pub fn node_cert(data: &[u8]) {
    let Ok(cert) = NodeCert::decode(data) else {
        return;
    };
    assert_eq!(cert.encode(), data, "node certificate round trip");
    let _ = cert.verify(&fixtures::root().verifying_key(), fixtures::NOW);
}

/// A peer's X.509 certificate as the TLS verifiers read it: `tls::parse_peer_cert`.
pub fn peer_cert(data: &[u8]) {
    if let Ok((_, Some(cert))) = tls::parse_peer_cert(data) {
        assert_eq!(
            NodeCert::decode(&cert.encode()).ok(),
            Some(cert),
            "the embedded node certificate round trip"
        );
    }
}
