//! Client subnets for benchmarks, taken from a MaxMind City (or Country) database: IPv4 /24s
//! and IPv6 /56s inside networks the database places on each continent, an equal share per
//! continent where it has enough networks, reproducible from a seed.
//!
//! Only networks at least as large as the subnet are used (an IPv4 network of /24 or shorter,
//! an IPv6 one of /56 or shorter), so every subnet lies wholly inside one database network and
//! any server reading the same database places it on the same continent.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::Path;

use maxminddb::{PathElement, Reader, WithinOptions};

use crate::rng::Rng;
use crate::wire::Subnet;

/// One chosen subnet and where the database puts it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pick {
    pub subnet: Subnet,
    pub continent: String,
    pub country: String,
}

impl std::fmt::Display for Pick {
    /// `subnet continent country`: the `loadgen --subnets` format (it reads the first field).
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} {}", self.subnet, self.continent, self.country)
    }
}

/// What to pick.
#[derive(Debug, Clone)]
pub struct Request {
    pub count: usize,
    /// Share of IPv6 subnets, 0..=100.
    pub ipv6_percent: u8,
    pub v4_prefix: u8,
    pub v6_prefix: u8,
    pub seed: u64,
}

impl Default for Request {
    fn default() -> Self {
        Request {
            count: 5000,
            ipv6_percent: 30,
            v4_prefix: 24,
            v6_prefix: 56,
            seed: 1,
        }
    }
}

/// A candidate network: (address, prefix length).
type Net = (IpAddr, u8);

/// Reservoir samples of candidate networks per (continent, family).
struct Reservoirs {
    size: usize,
    seen: HashMap<(String, bool), usize>,
    samples: BTreeMap<(String, bool), Vec<(Net, String)>>,
}

impl Reservoirs {
    fn offer(&mut self, rng: &mut Rng, continent: &str, v6: bool, net: Net, country: &str) {
        let key = (continent.to_owned(), v6);
        let seen = self.seen.entry(key.clone()).or_insert(0);
        *seen += 1;
        let sample = self.samples.entry(key).or_default();
        if sample.len() < self.size {
            sample.push((net, country.to_owned()));
        } else {
            let j = rng.below(*seen);
            if j < self.size {
                sample[j] = (net, country.to_owned());
            }
        }
    }
}

/// Pick `request.count` distinct subnets from the database at `path`.
pub fn pick(path: &Path, request: &Request) -> Result<Vec<Pick>, String> {
    let reader = Reader::open_readfile(path).map_err(|e| format!("{}: {e}", path.display()))?;
    pick_from(&reader, request)
}

pub fn pick_from(reader: &Reader<Vec<u8>>, request: &Request) -> Result<Vec<Pick>, String> {
    if request.v4_prefix > 32 || request.v6_prefix > 128 || request.ipv6_percent > 100 {
        return Err("prefix or IPv6 share out of range".into());
    }
    let mut rng = Rng::new(request.seed);
    let mut reservoirs = Reservoirs {
        size: request.count.max(1),
        seen: HashMap::new(),
        samples: BTreeMap::new(),
    };
    // Each distinct record is decoded once (networks share records).
    let mut by_offset: HashMap<usize, Option<(String, String)>> = HashMap::new();
    let iter = reader
        .networks(WithinOptions::default())
        .map_err(|e| e.to_string())?;
    for item in iter {
        let item = item.map_err(|e| e.to_string())?;
        let Some(offset) = item.offset() else {
            continue;
        };
        let net = item.network().map_err(|e| e.to_string())?;
        let (ip, prefix) = (net.ip(), net.prefix());
        let v6 = ip.is_ipv6();
        let wanted = if v6 {
            request.v6_prefix
        } else {
            request.v4_prefix
        };
        if prefix > wanted || !usable(ip) {
            continue;
        }
        let place = by_offset.entry(offset).or_insert_with(|| {
            let continent: Option<String> = item
                .decode_path(&[PathElement::Key("continent"), PathElement::Key("code")])
                .ok()
                .flatten();
            let country: Option<String> = item
                .decode_path(&[PathElement::Key("country"), PathElement::Key("iso_code")])
                .ok()
                .flatten();
            continent.map(|c| (c, country.unwrap_or_else(|| "-".into())))
        });
        if let Some((continent, country)) = place {
            reservoirs.offer(&mut rng, continent, v6, (ip, prefix), country);
        }
    }

    let n6 = request.count * usize::from(request.ipv6_percent) / 100;
    let mut out = Vec::with_capacity(request.count);
    let mut taken = HashSet::new();
    for (v6, want) in [(false, request.count - n6), (true, n6)] {
        let mut pools: Vec<(String, Vec<(Net, String)>)> = reservoirs
            .samples
            .iter()
            .filter(|((_, fam), _)| *fam == v6)
            .map(|((c, _), s)| (c.clone(), s.clone()))
            .collect();
        for (_, pool) in &mut pools {
            rng.shuffle(pool);
        }
        let shares = equal_shares(
            want,
            &pools.iter().map(|(_, p)| p.len()).collect::<Vec<_>>(),
        );
        let prefix = if v6 {
            request.v6_prefix
        } else {
            request.v4_prefix
        };
        for ((continent, pool), share) in pools.iter().zip(shares) {
            for ((ip, net_prefix), country) in pool.iter().take(share) {
                let subnet = Subnet {
                    addr: random_subnet(&mut rng, *ip, *net_prefix, prefix),
                    prefix,
                };
                if taken.insert(subnet) {
                    out.push(Pick {
                        subnet,
                        continent: continent.clone(),
                        country: country.clone(),
                    });
                }
            }
        }
    }
    if out.is_empty() {
        return Err("the database has no networks with a continent at these prefix lengths".into());
    }
    rng.shuffle(&mut out);
    Ok(out)
}

/// Public unicast space only: not the IPv6 transition ranges that alias IPv4 (6to4, Teredo,
/// IPv4-mapped/compatible), which a City database repeats.
fn usable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(_) => true,
        IpAddr::V6(a) => {
            let s = a.segments();
            !(s[0] == 0x2002 || (s[0] == 0x2001 && s[1] == 0) || s[..5] == [0; 5])
        }
    }
}

/// Split `want` over pools of the given sizes as equally as possible, giving what a small
/// pool cannot take to the others.
fn equal_shares(want: usize, sizes: &[usize]) -> Vec<usize> {
    let mut shares = vec![0; sizes.len()];
    let mut left = want;
    loop {
        let open: Vec<usize> = (0..sizes.len()).filter(|&i| shares[i] < sizes[i]).collect();
        if left == 0 || open.is_empty() {
            return shares;
        }
        let each = (left / open.len()).max(1);
        for i in open {
            let add = each.min(sizes[i] - shares[i]).min(left);
            shares[i] += add;
            left -= add;
        }
    }
}

/// A random `/prefix` inside the network `ip/net_prefix` (which is at least as large).
fn random_subnet(rng: &mut Rng, ip: IpAddr, net_prefix: u8, prefix: u8) -> IpAddr {
    let free_bits = u32::from(prefix.saturating_sub(net_prefix));
    match ip {
        IpAddr::V4(a) => {
            let base = u32::from(a);
            let pick = if free_bits == 0 {
                0
            } else {
                (rng.next_u64() as u32) & ((1u32 << free_bits.min(31)) - 1)
            };
            IpAddr::V4((base | (pick << (32 - u32::from(prefix)))).into())
        }
        IpAddr::V6(a) => {
            let base = u128::from(a);
            let r = (u128::from(rng.next_u64()) << 64) | u128::from(rng.next_u64());
            let pick = if free_bits == 0 {
                0
            } else {
                r & ((1u128 << free_bits.min(127)) - 1)
            };
            IpAddr::V6((base | (pick << (128 - u32::from(prefix)))).into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_are_equal_where_pools_allow() {
        assert_eq!(equal_shares(90, &[100, 100, 100]), vec![30, 30, 30]);
        assert_eq!(equal_shares(90, &[5, 100, 100]), vec![5, 43, 42]);
        assert_eq!(equal_shares(10, &[2, 3]), vec![2, 3]);
        assert_eq!(equal_shares(0, &[2, 3]), vec![0, 0]);
    }

    #[test]
    fn subnets_stay_inside_their_network() {
        let mut rng = Rng::new(3);
        for _ in 0..100 {
            let IpAddr::V4(a) = random_subnet(&mut rng, "10.64.0.0".parse().unwrap(), 10, 24)
            else {
                panic!()
            };
            let bits = u32::from(a);
            assert_eq!(bits & 0xffc0_0000, 0x0a40_0000);
            assert_eq!(bits & 0xff, 0);
        }
        let IpAddr::V6(a) = random_subnet(&mut rng, "2a02:d180::".parse().unwrap(), 29, 56) else {
            panic!()
        };
        assert_eq!(u128::from(a) & ((1 << 72) - 1), 0);
        assert_eq!(
            u128::from(a) >> 99,
            u128::from("2a02:d180::".parse::<std::net::Ipv6Addr>().unwrap()) >> 99
        );
        assert!(!usable("2002::".parse().unwrap()));
        assert!(usable("2a02::".parse().unwrap()));
    }
}
