//! `/etc/resolv.conf` as glibc reads it: name servers, the search list and `ndots`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The DNS port.
pub const DNS_PORT: u16 = 53;

/// The parts of a resolv.conf that moor uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvConf {
    /// `nameserver` lines, in order, on port 53.
    pub nameservers: Vec<SocketAddr>,
    /// The search list (from the last `search` or `domain` line).
    pub search: Vec<String>,
    /// `options ndots:N`: names with fewer dots try the search list first (default 1).
    pub ndots: usize,
}

/// The name servers of a resolv.conf text, on port 53, in order; lines that do not parse are
/// skipped.
pub fn upstreams_from_resolv_conf(text: &str) -> Vec<SocketAddr> {
    ResolvConf::parse(text).nameservers
}

// === impl ResolvConf ===

impl ResolvConf {
    /// Parses resolv.conf text; unknown lines and options are ignored, like glibc does.
    pub fn parse(text: &str) -> ResolvConf {
        let mut conf = ResolvConf {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: 1,
        };
        for line in text.lines() {
            let line = line.split(['#', ';']).next().unwrap_or_default();
            let mut words = line.split_whitespace();
            match words.next() {
                Some("nameserver") => {
                    // A scoped IPv6 address (`fe80::1%eth0`) cannot be expressed in a
                    // SocketAddr without the interface index; it is skipped.
                    if let Some(ip) = words.next().and_then(|w| w.parse::<IpAddr>().ok()) {
                        conf.nameservers.push(SocketAddr::new(ip, DNS_PORT));
                    }
                }
                Some("search" | "domain") => {
                    conf.search = words
                        .map(|d| d.trim_end_matches('.').to_owned())
                        .filter(|d| !d.is_empty())
                        .collect();
                }
                Some("options") => {
                    for option in words {
                        if let Some(n) = option.strip_prefix("ndots:").and_then(|n| n.parse().ok())
                        {
                            // glibc caps ndots at 15.
                            conf.ndots = usize::min(n, 15);
                        }
                    }
                }
                _ => {}
            }
        }
        conf
    }

    /// The name servers to ask: glibc falls back to the local host when there are none.
    pub fn servers(&self) -> Vec<SocketAddr> {
        if self.nameservers.is_empty() {
            vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), DNS_PORT)]
        } else {
            self.nameservers.clone()
        }
    }

    /// The absolute names to try for `name`, in order, as glibc's `res_search` does: a name
    /// with a trailing dot is only itself; one with at least `ndots` dots is tried as is first,
    /// then with each search domain; one with fewer dots the other way round.
    pub fn candidates(&self, name: &str) -> Vec<String> {
        if let Some(absolute) = name.strip_suffix('.') {
            return vec![absolute.to_owned()];
        }
        let searched = self.search.iter().map(|domain| format!("{name}.{domain}"));
        if name.matches('.').count() >= self.ndots {
            std::iter::once(name.to_owned()).chain(searched).collect()
        } else {
            searched.chain(std::iter::once(name.to_owned())).collect()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POD: &str = "# written by moor\nnameserver 10.96.0.10\nnameserver ::1\nnameserver bogus\n\
        search default.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1\n";

    #[test]
    fn parses_nameservers_search_and_ndots() {
        let conf = ResolvConf::parse(POD);
        assert_eq!(
            conf.nameservers,
            vec![
                "10.96.0.10:53".parse().unwrap(),
                "[::1]:53".parse().unwrap()
            ]
        );
        assert_eq!(conf.search.len(), 3);
        assert_eq!(conf.ndots, 5);
        assert_eq!(upstreams_from_resolv_conf(POD), conf.nameservers);
    }

    #[test]
    fn defaults_when_empty() {
        let conf = ResolvConf::parse("");
        assert_eq!(conf.ndots, 1);
        assert!(conf.search.is_empty());
        assert_eq!(conf.servers(), vec!["127.0.0.1:53".parse().unwrap()]);
    }

    #[test]
    fn few_dots_try_the_search_list_first() {
        let conf = ResolvConf::parse(POD);
        assert_eq!(
            conf.candidates("web"),
            vec![
                "web.default.svc.cluster.local",
                "web.svc.cluster.local",
                "web.cluster.local",
                "web"
            ]
        );
    }

    #[test]
    fn enough_dots_try_the_name_first_and_a_trailing_dot_is_absolute() {
        let conf = ResolvConf::parse("search example.com\noptions ndots:1\n");
        assert_eq!(conf.candidates("a.b"), vec!["a.b", "a.b.example.com"]);
        assert_eq!(conf.candidates("a"), vec!["a.example.com", "a"]);
        assert_eq!(conf.candidates("a."), vec!["a"]);
    }
}
