//! The fake's writable guests and tasks: enough of qemu-server's API for what the bpg/proxmox
//! Terraform provider, proxmoxer and Ansible's `community.proxmox` modules do to a VM
//! (HAND-WRITTEN, in the shapes of the Proxmox notes):
//!
//! - `GET /version` → `{version, release, repoid}`; `GET /cluster/nextid` → the next free
//!   VMID as a string (as pve-manager answers it).
//! - `POST /nodes/{node}/qemu` (form with `vmid` and config keys) → a UPID, a `qmcreate` task;
//!   `DELETE /nodes/{node}/qemu/{vmid}` → a UPID (`qmdestroy`).
//! - `GET /nodes/{node}/qemu/{vmid}/config` → the config with its `digest`;
//!   `PUT` (synchronous, `null`) and `POST` (asynchronous, a UPID) change it, `delete=a,b`
//!   removes keys.
//! - `GET /nodes/{node}/qemu/{vmid}/status/current` → `{status, qmpstatus, vmid, name, ...}`;
//!   `POST .../status/{start|stop|shutdown|reboot}` → a UPID.
//! - `GET /nodes/{node}/tasks/{upid}/status` → `running` for [`Guests::running_polls`] polls,
//!   then `stopped` with `exitstatus: OK`; `GET .../log` → the task's lines, sent chunked.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::Answer;

/// A VM made through the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Vm {
    pub node: String,
    pub config: BTreeMap<String, String>,
    pub running: bool,
}

/// A task (`UPID:...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Task {
    pub node: String,
    pub kind: String,
    pub id: String,
    pub user: String,
    pub starttime: u64,
    /// Status polls still answered `running`.
    pub polls_left: u32,
}

#[derive(Debug, Clone)]
pub(crate) struct Guests {
    pub vms: BTreeMap<u32, Vm>,
    pub tasks: BTreeMap<String, Task>,
    /// How many status polls a new task answers `running` before `stopped`.
    pub running_polls: u32,
    /// Lines of each task's log (`GET .../log`), enough for a chunked answer of many chunks.
    pub log_lines: usize,
    seq: u32,
}

impl Default for Guests {
    fn default() -> Guests {
        Guests {
            vms: BTreeMap::new(),
            tasks: BTreeMap::new(),
            running_polls: 2,
            log_lines: 200,
            seq: 0,
        }
    }
}

/// What a guest route answers.
pub(crate) enum Reply {
    Answer(Answer),
    /// 200, the body sent in these chunks (`Transfer-Encoding: chunked`).
    Chunked(Vec<String>),
}

/// The first `/`-separated segments of `path` (without the query).
fn segments(path: &str) -> Vec<&str> {
    let bare = path.split_once('?').map_or(path, |(p, _)| p);
    bare.split('/').filter(|s| !s.is_empty()).collect()
}

/// The ACL path a request acts on, for the privilege-separated token check: `/vms/{vmid}`
/// for a VM's routes and for creating one (its `vmid` in the form); `None` for the rest.
pub(crate) fn acl_path_of(path: &str, form: &BTreeMap<String, String>) -> Option<String> {
    match segments(path).as_slice() {
        ["nodes", _, "qemu" | "lxc"] => form.get("vmid").map(|v| format!("/vms/{v}")),
        ["nodes", _, "qemu" | "lxc", vmid, ..] => Some(format!("/vms/{vmid}")),
        _ => None,
    }
}

fn digest(config: &BTreeMap<String, String>) -> String {
    let text = serde_json::to_string(config).unwrap_or_default();
    portcullis_crypto::digest::sha256_hex(text.as_bytes())[..40].to_owned()
}

impl Guests {
    fn task(&mut self, node: &str, kind: &str, id: &str, user: &str, now: u64) -> String {
        self.seq += 1;
        let upid = format!(
            "UPID:{node}:{:08X}:{:08X}:{now:08X}:{kind}:{id}:{user}:",
            0x1000 + self.seq,
            0x20000 + self.seq,
        );
        self.tasks.insert(
            upid.clone(),
            Task {
                node: node.to_owned(),
                kind: kind.to_owned(),
                id: id.to_owned(),
                user: user.to_owned(),
                starttime: now,
                polls_left: self.running_polls,
            },
        );
        upid
    }

    fn no_vm(vmid: &str) -> Answer {
        Answer::with_message(
            500,
            &format!("Configuration file 'nodes/node1/qemu-server/{vmid}.conf' does not exist"),
        )
    }

    /// The answer of a guest route, or `None` when `path` is not one (the route table then
    /// answers). `user` is the caller's token id (a task's owner).
    pub(crate) fn route(
        &mut self,
        method: &str,
        path: &str,
        form: &BTreeMap<String, String>,
        user: &str,
        now: u64,
    ) -> Option<Reply> {
        let answer = |a| Some(Reply::Answer(a));
        match (method, segments(path).as_slice()) {
            ("GET", ["version"]) => answer(Answer::data(
                json!({ "version": "9.1.1", "release": "9.1", "repoid": "42d4ef2c" }),
            )),
            ("GET", ["cluster", "nextid"]) => {
                let next = self.vms.keys().max().map_or(4000, |m| m + 1);
                answer(Answer::data(json!(next.to_string())))
            }
            ("POST", ["nodes", node, "qemu"]) => {
                let Some(vmid) = form.get("vmid").and_then(|v| v.parse::<u32>().ok()) else {
                    return answer(super::access::param_error(
                        "vmid",
                        "property is missing and it is not optional",
                    ));
                };
                if self.vms.contains_key(&vmid) {
                    return answer(Answer::with_message(
                        500,
                        &format!("unable to create VM {vmid} - VM {vmid} already exists on node '{node}'"),
                    ));
                }
                let mut config: BTreeMap<String, String> = form.clone();
                config.remove("vmid");
                let start = config.remove("start").is_some_and(|s| s == "1");
                self.vms.insert(
                    vmid,
                    Vm {
                        node: (*node).to_owned(),
                        config,
                        running: start,
                    },
                );
                let upid = self.task(node, "qmcreate", &vmid.to_string(), user, now);
                answer(Answer::data(json!(upid)))
            }
            ("GET", ["nodes", _, "qemu", vmid, "config"]) => {
                let vm = self.vms.get(&vmid.parse().ok()?)?;
                let mut data: Map<String, Value> = vm
                    .config
                    .iter()
                    .map(|(k, v)| {
                        let value = v.parse::<i64>().map_or_else(|_| json!(v), |n| json!(n));
                        (k.clone(), value)
                    })
                    .collect();
                data.insert("digest".into(), json!(digest(&vm.config)));
                answer(Answer::data(Value::Object(data)))
            }
            (m @ ("PUT" | "POST"), ["nodes", node, "qemu", vmid, "config"]) => {
                let Some(vm) = vmid.parse().ok().and_then(|id| self.vms.get_mut(&id)) else {
                    return answer(Guests::no_vm(vmid));
                };
                for (k, v) in form {
                    match k.as_str() {
                        "delete" => {
                            for key in v.split([',', ';', ' ']).filter(|s| !s.is_empty()) {
                                vm.config.remove(key);
                            }
                        }
                        "digest" | "skiplock" | "background_delay" => {}
                        _ => {
                            vm.config.insert(k.clone(), v.clone());
                        }
                    }
                }
                if m == "PUT" {
                    answer(Answer::data(Value::Null))
                } else {
                    let upid = self.task(node, "qmconfig", vmid, user, now);
                    answer(Answer::data(json!(upid)))
                }
            }
            ("GET", ["nodes", _, "qemu", vmid, "status", "current"]) => {
                let id: u32 = vmid.parse().ok()?;
                let vm = self.vms.get(&id)?;
                let status = if vm.running { "running" } else { "stopped" };
                answer(Answer::data(json!({
                    "vmid": id, "status": status, "qmpstatus": status,
                    "name": vm.config.get("name").cloned().unwrap_or_else(|| format!("VM {id}")),
                    "cpus": vm.config.get("cores").and_then(|c| c.parse::<u32>().ok()).unwrap_or(1),
                    "maxmem": 2147483648u64, "uptime": if vm.running { 12 } else { 0 },
                    "agent": 0, "ha": { "managed": 0 },
                })))
            }
            ("POST", ["nodes", node, "qemu", vmid, "status", action]) => {
                let Some(vm) = vmid.parse().ok().and_then(|id| self.vms.get_mut(&id)) else {
                    return answer(Guests::no_vm(vmid));
                };
                let kind = match *action {
                    "start" => {
                        vm.running = true;
                        "qmstart"
                    }
                    "stop" => {
                        vm.running = false;
                        "qmstop"
                    }
                    "shutdown" => {
                        vm.running = false;
                        "qmshutdown"
                    }
                    "reboot" => "qmreboot",
                    _ => return None,
                };
                let upid = self.task(node, kind, vmid, user, now);
                answer(Answer::data(json!(upid)))
            }
            ("DELETE", ["nodes", node, "qemu", vmid]) => {
                if vmid
                    .parse()
                    .ok()
                    .and_then(|id| self.vms.remove(&id))
                    .is_none()
                {
                    return answer(Guests::no_vm(vmid));
                }
                let upid = self.task(node, "qmdestroy", vmid, user, now);
                answer(Answer::data(json!(upid)))
            }
            ("GET", ["nodes", _, "tasks", upid, "status"]) => {
                let upid = super::server::percent_decode(upid);
                let Some(task) = self.tasks.get_mut(&upid) else {
                    return answer(Answer::with_message(500, "no such task"));
                };
                let running = task.polls_left > 0;
                task.polls_left = task.polls_left.saturating_sub(1);
                let mut data = json!({
                    "upid": upid, "node": task.node, "pid": 4096, "pstart": 131072,
                    "starttime": task.starttime, "type": task.kind, "id": task.id,
                    "user": task.user, "status": if running { "running" } else { "stopped" },
                });
                if !running {
                    data["exitstatus"] = json!("OK");
                }
                answer(Answer::data(data))
            }
            ("GET", ["nodes", _, "tasks", upid, "log"]) => {
                let upid = super::server::percent_decode(upid);
                let task = self.tasks.get(&upid)?;
                let lines: Vec<Value> = (1..=self.log_lines)
                    .map(|n| json!({ "n": n, "t": format!("{} {}: step {n} of {}", task.kind, task.id, self.log_lines) }))
                    .collect();
                let body = json!({ "data": lines, "total": self.log_lines }).to_string();
                let chunks = body
                    .as_bytes()
                    .chunks(512)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect();
                Some(Reply::Chunked(chunks))
            }
            _ => None,
        }
    }
}
