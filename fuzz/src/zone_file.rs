//! Target `zone_file`: a zone file's text, as `steerdns check` and a reload read it.
//!
//! Invariants: nothing panics; a zone that loads also builds the zone set (every record it
//! accepted can be rendered for the fast path) and answers lookups of its apex and of a few
//! names below it; a refusal says why.

use hickory_proto::rr::{LowerName, Name, RecordType};
use steerdns::zone::{Zone, ZoneText, Zones};

pub fn check(data: &[u8]) {
    if data.len() > crate::MAX_INPUT {
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let texts = [ZoneText {
        source_name: "fuzz.zone".into(),
        text: text.to_owned(),
    }];
    let zone = match Zone::parse("example.com", &texts) {
        Ok(zone) => zone,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an empty error");
            return;
        }
    };
    let origin = LowerName::new(zone.origin());
    let zones = match Zones::new(vec![zone]) {
        Ok(zones) => zones,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "an empty error");
            return;
        }
    };
    let zone = zones.find(&origin).expect("the zone holds its origin");
    for name in [
        "example.com.",
        "www.example.com.",
        "a.b.example.com.",
        "*.example.com.",
    ] {
        let name = LowerName::new(&Name::from_ascii(name).expect("a valid name"));
        for rtype in [
            RecordType::A,
            RecordType::SOA,
            RecordType::TXT,
            RecordType::ANY,
        ] {
            let _ = zone.lookup(&name, rtype);
        }
    }
}
