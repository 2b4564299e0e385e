//! Authoritative behaviour on the demo zone (examples/zones/example.com.zone): header flags,
//! negative answers, referrals, CNAMEs, ANY, classes, opcodes, question counts.

use hickory_proto::op::{OpCode, ResponseCode};
use hickory_proto::rr::{DNSClass, RData, RecordType};

use crate::support::*;

const SOA_DATA: &str = "ns1.example.com. hostmaster.example.com. 2026112301 3600 600 604800 30";

/// The negative-answer SOA: owner the apex, TTL min(SOA TTL 3600, MINIMUM 30) = 30.
fn assert_negative_soa(d: &Dig) {
    assert_eq!(d.authority.len(), 1, "one SOA in authority:\n{}", d.text);
    let soa = &d.authority[0];
    assert_eq!(
        (
            soa.name.as_str(),
            soa.ttl,
            soa.rtype.as_str(),
            soa.data.as_str()
        ),
        ("example.com.", 30, "SOA", SOA_DATA),
        "{}",
        d.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_are_authoritative_without_ra_and_copy_rd_and_cd() {
    let running = start_demo().await;
    let server = v4(&running);

    // dig sets RD by default.
    let d = dig(server, &["example.com", "A"]).await;
    assert_eq!(d.status, "NOERROR");
    assert!(
        d.has_flag("qr") && d.has_flag("aa") && d.has_flag("rd"),
        "{}",
        d.text
    );
    assert!(!d.has_flag("ra"), "RA must be clear:\n{}", d.text);
    assert!(!d.has_flag("tc"), "{}", d.text);
    assert_eq!(d.answer_data("A"), vec!["192.0.2.80"]);

    let d = dig(server, &["example.com", "A", "+norec"]).await;
    assert_eq!(d.flags, vec!["qr", "aa"], "{}", d.text);

    // CD is copied, AD is not set by us.
    let d = dig(
        server,
        &["example.com", "A", "+cdflag", "+adflag", "+norec"],
    )
    .await;
    assert!(d.has_flag("cd"), "{}", d.text);
    assert!(!d.has_flag("ad"), "{}", d.text);

    // The same through raw packets: id echoed, RD both ways.
    for rd in [false, true] {
        let mut q = query("www.example.com", RecordType::A);
        q.metadata.recursion_desired = rd;
        let reply = udp(server, &q).await;
        assert_eq!(reply.metadata.id, q.metadata.id);
        assert!(reply.metadata.authoritative);
        assert!(!reply.metadata.recursion_available);
        assert_eq!(reply.metadata.recursion_desired, rd);
        assert_eq!(reply.metadata.op_code, OpCode::Query);
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nxdomain_carries_the_soa_with_the_negative_ttl() {
    let running = start_demo().await;
    let server = v4(&running);
    for qname in [
        "nope.example.com",
        "a.b.nope.example.com",
        "x._udp.example.com",
    ] {
        let d = dig(server, &[qname, "A", "+norec"]).await;
        assert_eq!(d.status, "NXDOMAIN", "{qname}:\n{}", d.text);
        assert!(d.has_flag("aa"), "{}", d.text);
        assert!(d.answer.is_empty(), "{}", d.text);
        assert_negative_soa(&d);
    }
    // hickory agrees on the SOA TTL and minimum.
    let reply = udp(server, &query("nope.example.com", RecordType::AAAA)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::NXDomain);
    let soa = &reply.authorities[0];
    assert_eq!(soa.ttl, 30);
    match &soa.data {
        RData::SOA(s) => assert_eq!((s.serial, s.minimum), (2026112301, 30)),
        other => panic!("{other:?}"),
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodata_is_noerror_with_empty_answer_and_soa() {
    let running = start_demo().await;
    let server = v4(&running);
    for (qname, qtype) in [
        ("mail.example.com", "AAAA"),
        ("mail.example.com", "TXT"),
        ("example.com", "AAAA"),
        ("pop.example.com", "MX"),
        ("pop.example.com", "TXT"),
        // An empty non-terminal: _udp exists because _sip._udp does.
        ("_udp.example.com", "A"),
        ("_udp.example.com", "SRV"),
    ] {
        let d = dig(server, &[qname, qtype, "+norec"]).await;
        assert_eq!(d.status, "NOERROR", "{qname} {qtype}:\n{}", d.text);
        assert!(d.has_flag("aa"), "{}", d.text);
        assert!(d.answer.is_empty(), "{qname} {qtype}:\n{}", d.text);
        assert_negative_soa(&d);
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_outside_our_zones_are_refused_without_aa() {
    let running = start_demo().await;
    let server = v4(&running);
    for qname in [
        "www.example.org",
        "com",
        ".",
        "example.net",
        "notexample.com",
    ] {
        let d = dig(server, &[qname, "A", "+norec"]).await;
        assert_eq!(d.status, "REFUSED", "{qname}:\n{}", d.text);
        assert!(!d.has_flag("aa"), "{qname}:\n{}", d.text);
        assert!(d.answer.is_empty() && d.authority.is_empty(), "{}", d.text);
    }
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_records_of_the_demo_zone() {
    let running = start_demo().await;
    let server = v4(&running);
    let cases: &[(&str, &str, &[&str], u32)] = &[
        ("example.com", "SOA", &[SOA_DATA], 3600),
        (
            "example.com",
            "NS",
            &["ns1.example.com.", "ns2.example.com."],
            3600,
        ),
        ("example.com", "A", &["192.0.2.80"], 3600),
        ("example.com", "MX", &["10 mail.example.com."], 3600),
        ("example.com", "TXT", &["\"v=spf1 mx -all\""], 3600),
        ("example.com", "CAA", &["0 issue \"letsencrypt.org\""], 3600),
        (
            "_sip._udp.example.com",
            "SRV",
            &["10 60 5060 sip.example.com."],
            3600,
        ),
        ("sip.example.com", "A", &["192.0.2.50"], 3600),
        ("mail.example.com", "A", &["192.0.2.25"], 3600),
        ("ns1.example.com", "A", &["127.0.0.1"], 3600),
        ("ns1.example.com", "AAAA", &["::1"], 3600),
        // The inline record from the config's `records`.
        ("demo.example.com", "TXT", &["\"served by steerdns\""], 300),
    ];
    for (qname, qtype, want, ttl) in cases {
        let d = dig(server, &[qname, qtype, "+norec"]).await;
        let ctx = format!("{qname} {qtype}:\n{}", d.text);
        assert_eq!(d.status, "NOERROR", "{ctx}");
        assert!(d.has_flag("aa"), "{ctx}");
        let mut got = d.answer_data(qtype);
        got.sort();
        assert_eq!(got, *want, "{ctx}");
        assert_eq!(d.answer.len(), want.len(), "{ctx}");
        assert!(d.answer.iter().all(|r| r.ttl == *ttl), "{ctx}");
        assert!(d.authority.is_empty(), "{ctx}");
    }
    running.shutdown().await;
}

/// `static.example.com` is a CNAME to the steered `www`: both CNAMEs are in the answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_to_the_steered_name_is_followed() {
    let running = start_demo().await;
    let server = v4(&running);
    let d = dig(
        server,
        &[
            "static.example.com",
            "A",
            "+subnet=2a02:d180::/56",
            "+norec",
        ],
    )
    .await;
    assert_eq!(d.status, "NOERROR");
    assert!(d.has_flag("aa"));
    let answer: Vec<_> = d
        .answer
        .iter()
        .map(|r| (r.name.as_str(), r.ttl, r.rtype.as_str(), r.data.as_str()))
        .collect();
    assert_eq!(
        answer,
        vec![
            ("static.example.com.", 3600, "CNAME", "www.example.com."),
            ("www.example.com.", 30, "CNAME", "cdn-c.example.net."),
        ],
        "{}",
        d.text
    );
    // The chain leaves our zones, so no SOA: the resolver follows cdn-c itself.
    assert!(d.authority.is_empty(), "{}", d.text);

    // Asking for the CNAME itself does not follow it.
    let d = dig(server, &["static.example.com", "CNAME", "+norec"]).await;
    assert_eq!(
        d.answer_data("CNAME"),
        vec!["www.example.com."],
        "{}",
        d.text
    );
    assert_eq!(d.answer.len(), 1);

    // Any type at the steered CNAME name gets the CNAME.
    let d = dig(
        server,
        &["www.example.com", "TXT", "+subnet=2a02:d180::/56"],
    )
    .await;
    assert_eq!(
        d.answer_data("CNAME"),
        vec!["cdn-c.example.net."],
        "{}",
        d.text
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn names_below_the_delegation_get_a_referral_with_glue() {
    let running = start_demo().await;
    let server = v4(&running);
    for (qname, qtype) in [
        ("host.sub.example.com", "A"),
        ("a.b.sub.example.com", "AAAA"),
        ("sub.example.com", "NS"),
        ("sub.example.com", "A"),
        // The glue owner itself is below the cut: not ours to answer.
        ("ns.sub.example.com", "A"),
    ] {
        let d = dig(server, &[qname, qtype, "+norec"]).await;
        let ctx = format!("{qname} {qtype}:\n{}", d.text);
        assert_eq!(d.status, "NOERROR", "{ctx}");
        assert!(!d.has_flag("aa"), "a referral is not authoritative: {ctx}");
        assert!(d.answer.is_empty(), "{ctx}");
        let authority: Vec<_> = d
            .authority
            .iter()
            .map(|r| (r.name.as_str(), r.rtype.as_str(), r.data.as_str()))
            .collect();
        assert_eq!(
            authority,
            vec![("sub.example.com.", "NS", "ns.sub.example.com.")],
            "{ctx}"
        );
        let additional: Vec<_> = d
            .additional
            .iter()
            .map(|r| (r.name.as_str(), r.rtype.as_str(), r.data.as_str()))
            .collect();
        assert_eq!(
            additional,
            vec![("ns.sub.example.com.", "A", "192.0.2.53")],
            "{ctx}"
        );
    }
    running.shutdown().await;
}

/// RFC 4035 §3.1.4.1 / RFC 4034 §5: the DS RRset lives on the parent side of a zone cut, so
/// the parent answers a DS query at the cut itself (here NODATA with the SOA, AA set) instead
/// of referring the resolver to the child, which does not have it.
/// (Regression test: before 4ccab55 this was a referral.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ds_at_the_delegation_point_is_answered_by_the_parent() {
    let running = start_demo().await;
    let d = dig(v4(&running), &["sub.example.com", "DS", "+norec"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(d.has_flag("aa"), "{}", d.text);
    assert!(d.answer.is_empty(), "{}", d.text);
    assert_negative_soa(&d);
    running.shutdown().await;
}

/// RFC 8482: ANY gets one RRset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_is_answered_with_a_single_rrset() {
    let running = start_demo().await;
    let server = v4(&running);
    for qname in ["example.com", "mail.example.com", "ns1.example.com"] {
        let reply = udp(server, &query(qname, RecordType::ANY)).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::NoError,
            "{qname}"
        );
        assert!(reply.metadata.authoritative);
        assert!(!reply.answers.is_empty(), "{qname}");
        let first = reply.answers[0].record_type();
        assert!(
            reply.answers.iter().all(|r| r.record_type() == first),
            "{qname}: one RRset, got {:?}",
            types(&reply.answers)
        );
        assert!(
            reply
                .answers
                .iter()
                .all(|r| r.name == reply.answers[0].name),
            "{qname}"
        );
    }
    // The apex has A, NS, SOA, MX, TXT, CAA: exactly one of them comes back, whole.
    let d = dig(server, &["example.com", "ANY", "+norec"]).await;
    let rtypes: std::collections::BTreeSet<_> = d.answer.iter().map(|r| r.rtype.clone()).collect();
    assert_eq!(rtypes.len(), 1, "{}", d.text);
    if rtypes.contains("NS") {
        assert_eq!(d.answer.len(), 2, "the whole NS RRset:\n{}", d.text);
    }
    // A steered address name: one of its RRsets.
    let d = dig(server, &["pop.example.com", "ANY", "+subnet=214.0.1.0/24"]).await;
    assert_eq!(d.status, "NOERROR");
    assert_eq!(d.answer.len(), 1, "{}", d.text);
    assert!(
        d.answer_data("A") == vec!["192.0.2.3"] || d.answer_data("AAAA") == vec!["2001:db8::3"],
        "{}",
        d.text
    );
    // A steered CNAME name: the CNAME.
    let d = dig(
        server,
        &["www.example.com", "ANY", "+subnet=2a02:d3c0::/56"],
    )
    .await;
    assert_eq!(
        d.answer_data("CNAME"),
        vec!["cdn-d.example.net."],
        "{}",
        d.text
    );
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chaos_class_and_zone_transfers_are_refused() {
    let running = start_demo().await;
    let server = v4(&running);

    let d = dig(server, &["version.bind", "TXT", "CH", "+norec"]).await;
    assert_eq!(d.status, "REFUSED", "{}", d.text);
    assert!(!d.has_flag("aa"));
    assert!(d.answer.is_empty());

    let mut q = query("www.example.com", RecordType::A);
    q.queries[0].set_query_class(DNSClass::CH);
    let reply = udp(server, &q).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::Refused);
    assert!(!reply.metadata.authoritative);

    for qtype in [RecordType::AXFR, RecordType::IXFR] {
        let q = query("example.com", qtype);
        let reply = tcp(server, &q).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::Refused,
            "{qtype}"
        );
        assert!(reply.answers.is_empty(), "{qtype}");
        let reply = udp(server, &q).await;
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::Refused,
            "{qtype} udp"
        );
    }
    // dig's own AXFR reports the failure.
    let text = dig_text(server, &["example.com", "AXFR"]).await;
    assert!(text.contains("Transfer failed"), "{text}");
    running.shutdown().await;
}

/// The question is echoed byte for byte (0x20 letter case), and the lookup ignores case.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_case_is_echoed() {
    let running = start_demo().await;
    let server = v4(&running);
    let q = ecs_query("WwW.ExAmPlE.cOm", RecordType::A, "2a02:d180::/56");
    let raw = udp_raw_reply(server, &q).await;
    let wire = b"\x03WwW\x07ExAmPlE\x03cOm\x00";
    assert_eq!(&raw[12..12 + wire.len()], wire, "question echoed as sent");
    let reply = decode(&raw);
    assert_eq!(reply.queries[0].name().to_ascii(), "WwW.ExAmPlE.cOm.");
    assert_eq!(cname_targets(&reply), vec!["cdn-c.example.net."]);

    let d = dig(server, &["MaIl.ExAmPlE.CoM", "A"]).await;
    assert_eq!(d.question, vec!["MaIl.ExAmPlE.CoM.\t\tIN\tA"], "{}", d.text);
    assert_eq!(d.answer_data("A"), vec!["192.0.2.25"]);
    running.shutdown().await;
}

fn with_opcode(message: &hickory_proto::op::Message, opcode: u8) -> Vec<u8> {
    let mut bytes = encode(message);
    bytes[2] = (bytes[2] & 0x87) | (opcode << 3);
    bytes
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_and_unsupported_opcodes_get_notimp() {
    let running = start_demo().await;
    let server = v4(&running);
    // 1 IQUERY (obsolete), 2 STATUS, 3 unassigned, 4 NOTIFY, 5 UPDATE, 6 DSO, 15 unassigned.
    for opcode in [1u8, 2, 3, 4, 5, 6, 15] {
        let q = query("www.example.com", RecordType::A);
        let raw = udp_bytes(server, &with_opcode(&q, opcode))
            .await
            .unwrap_or_else(|| panic!("opcode {opcode}: no reply"));
        assert_eq!(u16::from_be_bytes([raw[0], raw[1]]), q.metadata.id);
        assert_eq!(raw[2] & 0x80, 0x80, "QR set");
        assert_eq!((raw[2] >> 3) & 0x0f, opcode, "opcode echoed");
        assert_eq!(raw[3] & 0x0f, 4, "opcode {opcode}: NOTIMP");
        assert_eq!(raw[2] & 0x04, 0, "opcode {opcode}: AA clear");
        assert_eq!(u16::from_be_bytes([raw[6], raw[7]]), 0, "no answers");
    }
    for opcode in ["2", "3"] {
        let opt = format!("+opcode={opcode}");
        let d = dig(server, &["www.example.com", "A", &opt]).await;
        assert_eq!(d.status, "NOTIMP", "{}", d.text);
    }
    assert_alive(server).await;
    running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn question_count_other_than_one_is_formerr() {
    let running = start_demo().await;
    let server = v4(&running);

    let mut none = query("www.example.com", RecordType::A);
    none.queries.clear();
    for (transport, reply) in [
        ("udp", udp(server, &none).await),
        ("tcp", tcp(server, &none).await),
    ] {
        assert_eq!(
            reply.metadata.response_code,
            ResponseCode::FormErr,
            "{transport}"
        );
        assert!(reply.answers.is_empty());
    }

    let mut two = query("www.example.com", RecordType::A);
    two.add_query(hickory_proto::op::Query::query(
        name("mail.example.com"),
        RecordType::A,
    ));
    let reply = udp(server, &two).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    assert!(reply.answers.is_empty());

    let d = dig(server, &["www.example.com", "A", "+header-only"]).await;
    assert_eq!(d.status, "FORMERR", "{}", d.text);

    // OPT is not a question type.
    let reply = udp(server, &query("www.example.com", RecordType::OPT)).await;
    assert_eq!(reply.metadata.response_code, ResponseCode::FormErr);
    assert_alive(server).await;
    running.shutdown().await;
}

/// Messages with QR set are responses: never answered (no reflection), and harmless.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_are_not_answered() {
    let running = start_demo().await;
    let server = v4(&running);
    let mut q = query("www.example.com", RecordType::A);
    q.metadata.message_type = hickory_proto::op::MessageType::Response;
    let got = udp_bytes_wait(server, &encode(&q), SILENCE).await;
    assert!(got.is_none(), "a response was answered: {got:02x?}");
    assert_alive(server).await;
    running.shutdown().await;
}

/// CNAME chains inside our data: a dangling one ends in NXDOMAIN (RFC 6604: the rcode is for
/// the last name) with the CNAME kept; a loop is cut and answered, not spun on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cname_chains_dangling_and_looping() {
    let dir = TempDir::new("cname");
    let zone = format!(
        "{DEMO_ZONE}\n\
         dangling IN CNAME nothere.example.com.\n\
         chain1 IN CNAME chain2.example.com.\n\
         chain2 IN CNAME mail.example.com.\n\
         loop1 IN CNAME loop2.example.com.\n\
         loop2 IN CNAME loop1.example.com.\n"
    );
    let config = write_config(&dir, &zone, &demo_policies());
    let running = start_file(&config).await;
    let server = v4(&running);

    let d = dig(server, &["dangling.example.com", "A", "+norec"]).await;
    assert_eq!(d.status, "NXDOMAIN", "{}", d.text);
    assert_eq!(
        d.answer_data("CNAME"),
        vec!["nothere.example.com."],
        "{}",
        d.text
    );
    assert_negative_soa(&d);

    let d = dig(server, &["chain1.example.com", "A", "+norec"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert_eq!(
        d.answer_data("CNAME"),
        vec!["chain2.example.com.", "mail.example.com."]
    );
    assert_eq!(d.answer_data("A"), vec!["192.0.2.25"]);

    // NODATA at the end of a chain: the CNAMEs plus the SOA.
    let d = dig(server, &["chain1.example.com", "AAAA", "+norec"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert_eq!(d.answer.len(), 2, "{}", d.text);
    assert_negative_soa(&d);

    let d = dig(server, &["loop1.example.com", "A", "+norec"]).await;
    assert!(
        d.status == "NOERROR" || d.status == "SERVFAIL",
        "a loop is answered or failed, not hung:\n{}",
        d.text
    );
    assert!(d.answer.len() <= 8, "the chain is cut:\n{}", d.text);
    assert_alive(server).await;
    running.shutdown().await;
}

/// RFC 1034 §4.3.3 / RFC 4592: a wildcard record answers for names that do not exist below
/// it, at any depth, but never for names that exist (empty non-terminals included) nor below
/// a closer existing name. (Regression test: before 4ccab55 wildcards loaded but were never
/// expanded.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wildcard_records_answer_below_them() {
    let dir = TempDir::new("wildcard");
    let zone = format!(
        "{DEMO_ZONE}\n\
         *.wild IN A 192.0.2.99\n\
         real.wild IN A 192.0.2.98\n\
         *.wild2 IN A 192.0.2.96\n\
         x.y.wild2 IN A 192.0.2.97\n"
    );
    let config = write_config(&dir, &zone, &demo_policies());
    let running = start_file(&config).await;
    let server = v4(&running);
    // (qname, qtype, status, synthesised A, or None for an empty answer)
    let cases: &[(&str, &str, &str, Option<&str>)] = &[
        (
            "anything.wild.example.com",
            "A",
            "NOERROR",
            Some("192.0.2.99"),
        ),
        ("a.b.wild.example.com", "A", "NOERROR", Some("192.0.2.99")),
        (
            "anything.wild.example.com",
            "ANY",
            "NOERROR",
            Some("192.0.2.99"),
        ),
        // The wildcard owner has no AAAA: NODATA.
        ("anything.wild.example.com", "AAAA", "NOERROR", None),
        // Existing names are never covered.
        ("real.wild.example.com", "A", "NOERROR", Some("192.0.2.98")),
        ("real.wild.example.com", "TXT", "NOERROR", None),
        ("wild.example.com", "A", "NOERROR", None),
        // Closest encloser real.wild has no `*`: NXDOMAIN.
        ("sub.real.wild.example.com", "A", "NXDOMAIN", None),
        ("q.wild2.example.com", "A", "NOERROR", Some("192.0.2.96")),
        // y.wild2 exists (empty non-terminal): NODATA, and no `*.y.wild2` below it.
        ("y.wild2.example.com", "A", "NOERROR", None),
        ("z.y.wild2.example.com", "A", "NXDOMAIN", None),
    ];
    for (qname, qtype, status, a) in cases {
        let d = dig(server, &[qname, qtype, "+norec"]).await;
        let ctx = format!("{qname} {qtype}:\n{}", d.text);
        assert_eq!(d.status, *status, "{ctx}");
        assert!(d.has_flag("aa"), "{ctx}");
        match a {
            Some(a) => {
                assert_eq!(d.answer.len(), 1, "{ctx}");
                assert_eq!(d.answer[0].name, format!("{qname}."), "{ctx}");
                assert_eq!(d.answer[0].data, *a, "{ctx}");
                assert!(d.authority.is_empty(), "{ctx}");
            }
            None => {
                assert!(d.answer.is_empty(), "{ctx}");
                assert_negative_soa(&d);
            }
        }
    }
    running.shutdown().await;
}

/// Several zones: CNAMEs are followed into another of our zones (with that zone's SOA for a
/// negative end, RFC 6604), and a configured child zone answers below the parent's cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_zones_cname_across_zones_and_a_served_child() {
    let dir = TempDir::new("zones");
    let path = write_config(&dir, DEMO_ZONE, &demo_policies());
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(
        r#"
[[zone]]
origin = "example.net"
records = [
  "@ 3600 IN SOA ns1.example.com. hostmaster.example.com. 7 3600 600 604800 60",
  "@ 3600 IN NS ns1.example.com.",
  "cdn-c 300 IN A 192.0.2.30",
  "cdn-d 300 IN CNAME cdn-c.example.net.",
]

[[zone]]
origin = "sub.example.com"
records = [
  "@ 3600 IN SOA ns.sub.example.com. hostmaster.example.com. 9 3600 600 604800 10",
  "@ 3600 IN NS ns.sub.example.com.",
  "ns 3600 IN A 192.0.2.53",
  "host 600 IN A 192.0.2.54",
]
"#,
    );
    std::fs::write(&path, text).unwrap();
    let running = start_file(&path).await;
    let server = v4(&running);
    let rows = |d: &Dig| -> Vec<(String, String, String)> {
        d.answer
            .iter()
            .map(|r| (r.name.clone(), r.rtype.clone(), r.data.clone()))
            .collect()
    };
    let row = |n: &str, t: &str, v: &str| (n.to_owned(), t.to_owned(), v.to_owned());

    let d = dig(server, &["www.example.com", "A", "+subnet=2a02:d180::/56"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(d.has_flag("aa"));
    assert_eq!(
        rows(&d),
        vec![
            row("www.example.com.", "CNAME", "cdn-c.example.net."),
            row("cdn-c.example.net.", "A", "192.0.2.30"),
        ],
        "{}",
        d.text
    );
    assert_eq!(d.ecs, Some(("2a02:d180::".into(), 56, 29)));

    let d = dig(
        server,
        &["static.example.com", "A", "+subnet=81.2.69.142/32"],
    )
    .await;
    assert_eq!(
        rows(&d),
        vec![
            row("static.example.com.", "CNAME", "www.example.com."),
            row("www.example.com.", "CNAME", "cdn-d.example.net."),
            row("cdn-d.example.net.", "CNAME", "cdn-c.example.net."),
            row("cdn-c.example.net.", "A", "192.0.2.30"),
        ],
        "{}",
        d.text
    );

    // The default CDN has no record in our example.net: NXDOMAIN for the end of the chain,
    // with example.net's SOA (TTL min(3600, 60)).
    let d = dig(server, &["www.example.com", "A"]).await;
    assert_eq!(d.status, "NXDOMAIN", "{}", d.text);
    assert_eq!(d.answer_data("CNAME"), vec!["cdn-a.example.net."]);
    assert_eq!(d.authority.len(), 1, "{}", d.text);
    assert_eq!(
        (d.authority[0].name.as_str(), d.authority[0].ttl),
        ("example.net.", 60)
    );

    // We serve the child zone too: authoritative answers below the cut.
    let d = dig(server, &["host.sub.example.com", "A", "+norec"]).await;
    assert_eq!(d.status, "NOERROR", "{}", d.text);
    assert!(d.has_flag("aa"), "{}", d.text);
    assert_eq!(d.answer_data("A"), vec!["192.0.2.54"], "{}", d.text);
    let d = dig(server, &["sub.example.com", "NS", "+norec"]).await;
    assert!(d.has_flag("aa"), "{}", d.text);
    assert_eq!(
        d.answer_data("NS"),
        vec!["ns.sub.example.com."],
        "{}",
        d.text
    );
    let d = dig(server, &["nope.sub.example.com", "A", "+norec"]).await;
    assert_eq!(d.status, "NXDOMAIN", "{}", d.text);
    assert_eq!(
        (d.authority[0].name.as_str(), d.authority[0].ttl),
        ("sub.example.com.", 10)
    );
    running.shutdown().await;
}
