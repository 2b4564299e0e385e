//! AWS regions: the continent (GeoIP continent codes, so the Middle East is Asia) and rough
//! coordinates of each, for translating latency and geoproximity rules into geo rules.
//! Local Zones (`us-east-1-bos-1a`) count as their parent region. Also the continents a
//! country can be in, so a translated country rule only considers the continent rules that can
//! also match its clients.

/// (region, continent, latitude, longitude of its metro area).
const REGIONS: &[(&str, &str, f64, f64)] = &[
    ("us-east-1", "NA", 38.9, -77.4),
    ("us-east-2", "NA", 40.0, -83.0),
    ("us-west-1", "NA", 37.4, -121.9),
    ("us-west-2", "NA", 45.8, -119.7),
    ("us-gov-east-1", "NA", 40.0, -83.0),
    ("us-gov-west-1", "NA", 45.5, -122.7),
    ("ca-central-1", "NA", 45.5, -73.6),
    ("ca-west-1", "NA", 51.0, -114.1),
    ("mx-central-1", "NA", 20.6, -100.4),
    ("sa-east-1", "SA", -23.5, -46.6),
    ("eu-west-1", "EU", 53.3, -6.3),
    ("eu-west-2", "EU", 51.5, -0.1),
    ("eu-west-3", "EU", 48.9, 2.4),
    ("eu-central-1", "EU", 50.1, 8.7),
    ("eu-central-2", "EU", 47.4, 8.5),
    ("eu-north-1", "EU", 59.3, 18.1),
    ("eu-south-1", "EU", 45.5, 9.2),
    ("eu-south-2", "EU", 41.6, -0.9),
    ("il-central-1", "AS", 32.1, 34.8),
    ("me-south-1", "AS", 26.1, 50.6),
    ("me-central-1", "AS", 24.5, 54.4),
    ("af-south-1", "AF", -33.9, 18.4),
    ("ap-east-1", "AS", 22.3, 114.2),
    ("ap-east-2", "AS", 25.0, 121.5),
    ("ap-south-1", "AS", 19.1, 72.9),
    ("ap-south-2", "AS", 17.4, 78.5),
    ("ap-northeast-1", "AS", 35.7, 139.7),
    ("ap-northeast-2", "AS", 37.6, 127.0),
    ("ap-northeast-3", "AS", 34.7, 135.5),
    ("ap-southeast-1", "AS", 1.35, 103.8),
    ("ap-southeast-2", "OC", -33.9, 151.2),
    ("ap-southeast-3", "AS", -6.2, 106.8),
    ("ap-southeast-4", "OC", -37.8, 145.0),
    ("ap-southeast-5", "AS", 3.1, 101.7),
    ("ap-southeast-6", "OC", -36.8, 174.8),
    ("ap-southeast-7", "AS", 13.7, 100.5),
    ("cn-north-1", "AS", 39.9, 116.4),
    ("cn-northwest-1", "AS", 38.5, 106.3),
];

fn find(region: &str) -> Option<&'static (&'static str, &'static str, f64, f64)> {
    let region = region.to_ascii_lowercase();
    // The longest known region the name starts with: a Local Zone names its parent first.
    REGIONS
        .iter()
        .filter(|(r, ..)| {
            region == *r
                || region
                    .strip_prefix(r)
                    .is_some_and(|rest| rest.starts_with('-'))
        })
        .max_by_key(|(r, ..)| r.len())
}

/// The GeoIP continent code of an AWS region (or Local Zone), if the importer knows it.
pub fn continent(region: &str) -> Option<&'static str> {
    find(region).map(|(_, c, ..)| *c)
}

/// The continent of the AWS region nearest to a point (great-circle distance).
pub fn nearest_continent(latitude: f64, longitude: f64) -> (&'static str, &'static str) {
    let (lat, lon) = (latitude.to_radians(), longitude.to_radians());
    let distance = |(_, _, rlat, rlon): &(&str, &str, f64, f64)| {
        let (rlat, rlon) = (rlat.to_radians(), rlon.to_radians());
        let h = ((rlat - lat) / 2.0).sin().powi(2)
            + lat.cos() * rlat.cos() * ((rlon - lon) / 2.0).sin().powi(2);
        h.sqrt().min(1.0).asin()
    };
    let mut best = &REGIONS[0];
    for r in REGIONS {
        if distance(r) < distance(best) {
            best = r;
        }
    }
    (best.0, best.1)
}

/// Countries by continent, as GeoIP databases assign them (GeoNames' continents). Countries
/// spanning two continents are listed under both, so either assignment is covered.
const COUNTRIES: &[(&str, &str)] = &[
    (
        "AF",
        "AO BF BI BJ BW CD CF CG CI CM CV DJ DZ EG EH ER ET GA GH GM GN GQ GW KE KM LR LS LY MA \
         MG ML MR MU MW MZ NA NE NG RE RW SC SD SH SL SN SO SS ST SZ TD TG TN TZ UG YT ZA ZM ZW",
    ),
    ("AN", "AQ BV GS HM TF"),
    (
        "AS",
        "AE AF AM AZ BD BH BN BT CC CN CX CY EG GE HK ID IL IN IO IQ IR JO JP KG KH KP KR KW KZ \
         LA LB LK MM MN MO MV MY NP OM PH PK PS QA RU SA SG SY TH TJ TL TM TR TW UZ VN YE",
    ),
    (
        "EU",
        "AD AL AM AT AX AZ BA BE BG BY CH CY CZ DE DK EE ES FI FO FR GB GE GG GI GL GR HR HU IE \
         IM IS IT JE KZ LI LT LU LV MC MD ME MK MT NL NO PL PT RO RS RU SE SI SJ SK SM TR UA VA XK",
    ),
    (
        "NA",
        "AG AI AW BB BL BM BQ BS BZ CA CR CU CW DM DO GD GL GP GT HN HT JM KN KY LC MF MQ MS MX \
         NI PA PM PR SV SX TC TT UM US VC VG VI",
    ),
    (
        "OC",
        "AS AU CK FJ FM GU KI MH MP NC NF NR NU NZ PF PG PN PW SB TK TO TV UM VU WF WS",
    ),
    ("SA", "AR BO BR CL CO EC FK GF GY PA PE PY SR TT UY VE"),
];

/// Whether clients in `country` can be on `continent` (true for a country not in the table).
pub fn country_on(country: &str, continent: &str) -> bool {
    let listed = |c: &str| {
        COUNTRIES
            .iter()
            .any(|(_, list)| list.split_whitespace().any(|x| x == c))
    };
    if !listed(country) {
        return true;
    }
    COUNTRIES
        .iter()
        .any(|(cont, list)| *cont == continent && list.split_whitespace().any(|x| x == country))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_and_local_zones_map_to_continents() {
        assert_eq!(continent("us-east-1"), Some("NA"));
        assert_eq!(continent("us-east-1-bos-1a"), Some("NA"));
        assert_eq!(continent("ap-southeast-2"), Some("OC"));
        assert_eq!(continent("me-central-1"), Some("AS"));
        assert_eq!(continent("mars-north-1"), None);
        assert_eq!(continent("us-east-12"), None);
        assert_eq!(nearest_continent(48.85, 2.35), ("eu-west-3", "EU"));
        assert_eq!(nearest_continent(-37.8, 144.9), ("ap-southeast-4", "OC"));
        assert!(country_on("GB", "EU") && !country_on("GB", "AS"));
        assert!(country_on("TR", "EU") && country_on("TR", "AS"));
        // Every country steerdns knows is on some continent here.
        for cc in [
            "US", "BR", "AU", "CN", "ZA", "AQ", "XK", "SE", "JP", "BT", "PH",
        ] {
            assert!(
                COUNTRIES
                    .iter()
                    .any(|(_, l)| l.split_whitespace().any(|x| x == cc)),
                "{cc}"
            );
        }
    }
}
