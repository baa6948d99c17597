//! The fuzz entry of the Proxmox answer readers (`fuzz/fuzz_targets/proxmox_answers.rs`
//! through `crate::fuzzing::proxmox_answers`): a hostile or broken Proxmox API must give an
//! error or a note, never a panic, and what the walk keeps must hold its promises.

use std::net::IpAddr;

use serde_json::Value;

use super::discover::{run, Api, Walk};
use super::{errors, ProxmoxError};

/// Answers by path: `data`, or an error for `{"$error": [status, "words"]}`; a path
/// without an answer is a 500.
struct ByPath(serde_json::Map<String, Value>);

impl Api for ByPath {
    async fn get(&self, path: &str) -> Result<Value, ProxmoxError> {
        let error = |status: u16, message: String| ProxmoxError::Api {
            url: "https://pve.fuzz:8006/".into(),
            method: "GET",
            path: path.to_owned(),
            status,
            message,
        };
        match self.0.get(path) {
            None => Err(error(500, format!("no answer for {path}"))),
            Some(answer) => match answer
                .get("$error")
                .and_then(Value::as_array)
                .map(Vec::as_slice)
            {
                Some([status, words]) => Err(error(
                    status
                        .as_u64()
                        .and_then(|s| u16::try_from(s).ok())
                        .unwrap_or(500),
                    words.as_str().unwrap_or_default().to_owned(),
                )),
                _ => Ok(answer.clone()),
            },
        }
    }
}

/// Answers every GET with the same `data`.
struct Same(Value);

impl Api for Same {
    async fn get(&self, _: &str) -> Result<Value, ProxmoxError> {
        Ok(self.0.clone())
    }
}

/// First byte: 0 mod 3, the rest is a JSON object of answers by path (`nodes`,
/// `cluster/resources?type=vm`, `nodes/pve1/qemu/100/config`...) for a whole walk; 1, it is
/// one answer as the client reads it (`{"data": ...}`), given to every call of a walk; 2, it
/// is an error answer (two bytes of status, a reason phrase up to the first newline, the
/// body).
pub(crate) fn answers(data: &[u8]) {
    let Some((mode, rest)) = data.split_first() else {
        return;
    };
    match mode % 3 {
        0 => {
            let Ok(Value::Object(mut answers)) = serde_json::from_slice::<Value>(rest) else {
                return;
            };
            let nodes = answers.remove("nodes").unwrap_or(Value::Null);
            walk(nodes, &ByPath(answers));
        }
        1 => {
            let Ok(value) = super::wire::envelope(rest) else {
                return;
            };
            walk(value.clone(), &Same(value));
        }
        _ => {
            let [hi, lo, rest @ ..] = rest else {
                return;
            };
            let status = u16::from_be_bytes([*hi, *lo]);
            let (reason, body) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (std::str::from_utf8(&rest[..i]).ok(), &rest[i + 1..]),
                None => (None, rest),
            };
            let words = errors::proxmox_words(status, reason, body);
            assert!(!words.is_empty());
            let _ = errors::explain(status, &words);
        }
    }
}

fn walk<A: Api>(nodes: Value, api: &A) {
    let settings = Walk {
        cluster: "fuzz".into(),
        url: "https://pve.fuzz:8006/".into(),
        guest_agent: true,
        sdn: true,
    };
    let Some(result) = futures_util::FutureExt::now_or_never(run(&settings, api, nodes)) else {
        panic!("the walk waited on answers that were all ready");
    };
    let Ok(discovery) = result else {
        return;
    };
    let ids: Vec<u32> = discovery.guests.iter().map(|g| g.vmid).collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "guests out of order: {ids:?}"
    );
    for guest in &discovery.guests {
        for (i, a) in guest.addresses.iter().enumerate() {
            assert!(
                !guest.addresses[..i].iter().any(|b| b.ip == a.ip),
                "{} listed twice",
                a.ip
            );
            if a.origin.guest_reported() {
                let unusable = match a.ip {
                    IpAddr::V4(v4) => {
                        v4.is_loopback()
                            || v4.is_link_local()
                            || v4.is_unspecified()
                            || v4.is_multicast()
                    }
                    IpAddr::V6(v6) => {
                        v6.is_loopback()
                            || v6.is_unspecified()
                            || v6.is_multicast()
                            || (v6.segments()[0] & 0xffc0) == 0xfe80
                    }
                };
                assert!(!unusable, "a guest-reported {} was kept", a.ip);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The hand-written seed takes the fuzzer deep: guests with addresses of every origin.
    #[test]
    fn the_walk_seed_reaches_every_kind_of_address() {
        let seed = include_bytes!("../../../../fuzz/corpus/proxmox_answers/walk-hand-written");
        let Value::Object(mut answers) = serde_json::from_slice(&seed[1..]).unwrap() else {
            panic!("the seed is not an object");
        };
        let nodes = answers.remove("nodes").unwrap();
        let settings = Walk {
            cluster: "fuzz".into(),
            url: "https://pve.fuzz:8006/".into(),
            guest_agent: true,
            sdn: true,
        };
        let d = futures_util::FutureExt::now_or_never(run(&settings, &ByPath(answers), nodes))
            .unwrap()
            .unwrap();
        let mut origins: Vec<&str> = d
            .guests
            .iter()
            .flat_map(|g| g.addresses.iter().map(|a| a.origin.as_str()))
            .collect();
        origins.sort_unstable();
        origins.dedup();
        assert_eq!(
            origins,
            ["guest-agent", "lxc-config", "lxc-interfaces", "sdn-ipam"],
            "{d:#?}"
        );
    }
}
