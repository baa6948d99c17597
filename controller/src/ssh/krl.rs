//! OpenSSH key revocation lists (PROTOCOL.krl): certificates revoked by serial and by key id,
//! per CA. Targets point `RevokedKeys` at `GET /v1/ssh/krl`; `ssh-keygen -Q -f KRL CERT`
//! checks a certificate against it.

const KRL_MAGIC: u64 = 0x5353_484b_524c_0a00; // "SSHKRL\n\0"
const KRL_FORMAT_VERSION: u32 = 1;
const SECTION_CERTIFICATES: u8 = 1;
const CERT_SERIAL_LIST: u8 = 0x20;
const CERT_KEY_ID: u8 = 0x23;

fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u32::try_from(bytes.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// The SSH wire encoding of an Ed25519 public key.
fn ed25519_blob(raw: &[u8; 32]) -> Vec<u8> {
    let mut blob = Vec::with_capacity(51);
    put_string(&mut blob, b"ssh-ed25519");
    put_string(&mut blob, raw);
    blob
}

/// The SSH wire encoding of an Ed25519 CA key, for [`CaRevocations::ca_blob`].
pub(crate) fn ed25519_ca_blob(raw: &[u8; 32]) -> Vec<u8> {
    ed25519_blob(raw)
}

/// Revocations under one CA.
pub(crate) struct CaRevocations<'a> {
    /// The CA's public key in SSH wire encoding (any algorithm, e.g. a Vault CA's RSA key).
    pub ca_blob: Vec<u8>,
    pub serials: &'a [u64],
    pub key_ids: &'a [String],
}

/// Builds a KRL; `version` should grow with every change (the unix time works).
pub(crate) fn build(cas: &[CaRevocations<'_>], version: u64, generated: u64) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&KRL_MAGIC.to_be_bytes());
    out.extend_from_slice(&KRL_FORMAT_VERSION.to_be_bytes());
    out.extend_from_slice(&version.to_be_bytes());
    out.extend_from_slice(&generated.to_be_bytes());
    out.extend_from_slice(&0u64.to_be_bytes()); // flags
    put_string(&mut out, b""); // reserved
    put_string(&mut out, b"portcullis");
    for ca in cas {
        if ca.serials.is_empty() && ca.key_ids.is_empty() {
            continue;
        }
        let mut section = Vec::new();
        put_string(&mut section, &ca.ca_blob);
        put_string(&mut section, b""); // reserved
        if !ca.serials.is_empty() {
            let mut serials = ca.serials.to_vec();
            serials.sort_unstable();
            serials.dedup();
            let mut list = Vec::with_capacity(serials.len() * 8);
            for s in serials {
                list.extend_from_slice(&s.to_be_bytes());
            }
            section.push(CERT_SERIAL_LIST);
            put_string(&mut section, &list);
        }
        if !ca.key_ids.is_empty() {
            let mut ids = Vec::new();
            for id in ca.key_ids {
                put_string(&mut ids, id.as_bytes());
            }
            section.push(CERT_KEY_ID);
            put_string(&mut section, &ids);
        }
        out.push(SECTION_CERTIFICATES);
        put_string(&mut out, &section);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn header_and_sections_are_laid_out() {
        let krl = super::build(
            &[super::CaRevocations {
                ca_blob: super::ed25519_ca_blob(&[1; 32]),
                serials: &[3, 2],
                key_ids: &["s_1".into()],
            }],
            7,
            9,
        );
        assert_eq!(&krl[..8], b"SSHKRL\n\0");
        assert_eq!(u32::from_be_bytes([krl[8], krl[9], krl[10], krl[11]]), 1);
        // Serials are sorted big-endian u64s.
        let two = 2u64.to_be_bytes();
        let three = 3u64.to_be_bytes();
        let pos2 = krl.windows(8).position(|w| w == two).unwrap();
        let pos3 = krl.windows(8).position(|w| w == three).unwrap();
        assert!(pos2 < pos3);
        assert!(krl.windows(3).any(|w| w == b"s_1"));
        let empty = super::build(&[], 1, 1);
        assert_eq!(empty.len(), 8 + 4 + 8 + 8 + 8 + 4 + 4 + 10);
    }
}
