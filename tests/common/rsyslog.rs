//! A private rsyslogd (Debian's `rsyslog` + `rsyslog-gnutls`) receiving RFC 5425 syslog over
//! TLS on 127.0.0.1, with a certificate from a CA made for the test. It writes each message's
//! structured data and text to a file the test reads.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub(crate) struct Rsyslog {
    child: Child,
    pub addr: String,
    /// The CA that signed the server's certificate (for the sink's `ca_file`).
    pub ca_file: PathBuf,
    out: PathBuf,
}

impl Rsyslog {
    pub(crate) fn start(dir: &Path) -> Rsyslog {
        let out = dir.join("received.log");
        let rules = format!(
            "template(name=\"raw\" type=\"string\" string=\"%msgid% %structured-data% %msg%\\n\")\n\
             *.* action(type=\"omfile\" file=\"{}\" template=\"raw\")\n",
            out.display()
        );
        Rsyslog::start_with(dir, &rules)
    }

    /// Like [`Rsyslog::start`], with `rules` (templates and actions) instead of the file
    /// [`Rsyslog::messages`] reads.
    pub(crate) fn start_with(dir: &Path, rules: &str) -> Rsyslog {
        let bin = ["/usr/sbin/rsyslogd", "/sbin/rsyslogd"]
            .into_iter()
            .find(|p| Path::new(p).exists())
            .expect("rsyslogd is missing: scripts/test installs rsyslog and rsyslog-gnutls");
        std::fs::create_dir_all(dir).unwrap();
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "test SIEM CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["siem.test".to_owned()]).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "siem.test");
        let cert = params.signed_by(&key, &issuer).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        std::fs::write(dir.join("server.pem"), cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), key.serialize_pem()).unwrap();
        let out = dir.join("received.log");
        let work = dir.join("work");
        std::fs::create_dir_all(&work).unwrap();
        let conf = dir.join("rsyslog.conf");
        let log_path = dir.join("rsyslogd.log");
        // rsyslogd cannot listen on port 0 and say which port it got: a free port, and
        // another when that one was taken before it bound it (it then logs so and runs on
        // without the listener).
        let (child, addr) = super::ports::start_on_free_port("rsyslogd", |port| {
            std::fs::write(
                &conf,
                format!(
                    r#"global(
  workDirectory="{work}"
  maxMessageSize="64k"
  DefaultNetstreamDriver="gtls"
  DefaultNetstreamDriverCAFile="{dir}/ca.pem"
  DefaultNetstreamDriverCertFile="{dir}/server.pem"
  DefaultNetstreamDriverKeyFile="{dir}/server.key"
)
module(load="imtcp" StreamDriver.Name="gtls" StreamDriver.Mode="1" StreamDriver.AuthMode="anon")
input(type="imtcp" address="127.0.0.1" port="{port}")
{rules}"#,
                    work = work.display(),
                    dir = dir.display(),
                ),
            )
            .unwrap();
            let log = std::fs::File::create(&log_path).unwrap();
            let mut child = Command::new(bin)
                .args(["-n", "-f"])
                .arg(&conf)
                .arg("-i")
                .arg(dir.join("rsyslogd.pid"))
                .stdin(Stdio::null())
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .unwrap();
            let addr = format!("127.0.0.1:{port}");
            let up = super::wait::poll_within(Duration::from_secs(10), || {
                let said = std::fs::read_to_string(&log_path).unwrap_or_default();
                if super::ports::says_address_in_use(&said) {
                    return Ok(Err(said));
                }
                match std::net::TcpStream::connect(&addr) {
                    Ok(_) => Ok(Ok(())),
                    Err(_) => Err(said),
                }
            });
            match up {
                Ok(Ok(())) => super::ports::Start::Up((child, addr)),
                Ok(Err(said)) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    super::ports::Start::Collided(said)
                }
                Err(said) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("timed out after 10 s waiting for rsyslogd to listen on {addr}:\n{said}")
                }
            }
        });
        Rsyslog {
            child,
            addr,
            ca_file,
            out,
        }
    }

    /// The messages received so far: (MSGID, structured data, text).
    pub(crate) fn messages(&self) -> Vec<(String, String, String)> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let (msgid, rest) = line.split_once(' ')?;
                let end = rest.find("] ")?;
                Some((
                    msgid.to_owned(),
                    rest[..=end].to_owned(),
                    rest[end + 2..].trim_start().to_owned(),
                ))
            })
            .collect()
    }

    /// The received text as JSON lines, as a sink copy for `audit verify --file`.
    pub(crate) fn copy_to(&self, path: &Path) {
        let lines: Vec<String> = self.messages().into_iter().map(|(_, _, m)| m).collect();
        std::fs::write(path, lines.join("\n") + "\n").unwrap();
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
