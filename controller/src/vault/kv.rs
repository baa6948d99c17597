//! A field of a KV v2 secret, read with the controller's own token (e.g. the Proxmox
//! discovery token the catalog reads).

use super::{Vault, VaultError};
use crate::secret::SecretString;

impl Vault {
    /// The string `field` of the KV v2 secret at `path` (`secret/data/NAME`: the mount, then
    /// `data/`, then the secret's name).
    pub(crate) async fn read_kv_field(
        &self,
        path: &str,
        field: &str,
    ) -> Result<SecretString, VaultError> {
        let what = format!("a read of {path:?}");
        if !super::valid_path(path) {
            return Err(VaultError::Unexpected {
                what,
                message: "not a Vault path".into(),
            });
        }
        let client = self.client().await;
        let result = self
            .raw(
                &client,
                &what,
                rustify::enums::RequestMethod::GET,
                path,
                None,
            )
            .await?;
        // KV v2 wraps the secret's fields in `data` (beside `metadata`).
        let data = result.data.unwrap_or(serde_json::Value::Null);
        let fields = data.get("data").filter(|d| d.is_object()).unwrap_or(&data);
        match fields.get(field).and_then(serde_json::Value::as_str) {
            Some(value) => Ok(SecretString::from(value.to_owned())),
            None => Err(VaultError::Unexpected {
                what,
                message: format!("the secret has no string field {field:?}"),
            }),
        }
    }
}
