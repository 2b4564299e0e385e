//! Parsing what operators write about places: ISO 3166-1 alpha-2 country codes (plus `XK`,
//! which MaxMind uses for Kosovo), continents, subdivisions and networks.

const COUNTRIES: &str = "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ \
BL BM BN BO BQ BR BS BT BV BW BY BZ CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ \
DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT \
GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP KE KG KH KI KM KN KP KR KW KY \
KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT MU MV MW MX \
MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS \
RU RW SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN \
TO TR TT TV TW TZ UA UG UM US UY UZ VA VC VE VG VI VN VU WF WS XK YE YT ZA ZM ZW";

pub fn is_country(code: &str) -> bool {
    code.len() == 2 && COUNTRIES.split(' ').any(|c| c == code)
}

/// Common mistakes worth a hint in the error message.
pub fn suggest_country(code: &str) -> Option<String> {
    let upper = code.to_ascii_uppercase();
    match upper.as_str() {
        "UK" => Some("GB".into()),
        "EL" => Some("GR".into()),
        _ if upper != code && is_country(&upper) => Some(upper),
        _ => None,
    }
}

/// A country code as written in a config or policy, checked; the error is the reason text.
pub fn parse_country(code: &str) -> Result<[u8; 2], String> {
    if is_country(code) {
        let b = code.as_bytes();
        return Ok([b[0], b[1]]);
    }
    let hint = suggest_country(code)
        .map(|s| format!(" (did you mean {s:?}?)"))
        .unwrap_or_default();
    Err(format!("{code:?} is not ISO 3166-1 alpha-2{hint}"))
}

/// A continent code (any case).
pub fn parse_continent(code: &str) -> Result<super::Continent, String> {
    super::Continent::from_code(&code.to_ascii_uppercase())
        .ok_or_else(|| format!("{code:?} is not a continent code (AF, AN, AS, EU, NA, OC, SA)"))
}

/// An ISO 3166-2 code such as `US-CA`: (country, first-level subdivision).
pub fn parse_subdivision(code: &str) -> Result<([u8; 2], String), String> {
    let Some((country, sub)) = code.split_once('-') else {
        return Err(format!(
            "{code:?} is not an ISO 3166-2 code like \"US-CA\" or \"GB-ENG\""
        ));
    };
    let country = parse_country(country)?;
    if sub.is_empty() || sub.len() > 3 || !sub.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(format!(
            "{code:?}: the subdivision part must be 1-3 letters or digits"
        ));
    }
    Ok((country, sub.to_ascii_uppercase()))
}

/// A network as written in a config, policy or API call: `192.0.2.0/24`, with no host bits
/// set (a likely typo, so say what was probably meant).
pub fn parse_network(text: &str) -> Result<ipnet::IpNet, String> {
    let net: ipnet::IpNet = text
        .parse()
        .map_err(|_| format!("{text:?} is not a network like 192.0.2.0/24"))?;
    if net.trunc() != net {
        return Err(format!(
            "{text:?} has host bits set (did you mean \"{}\"?)",
            net.trunc()
        ));
    }
    Ok(net)
}
