//! What `targets` and `workers` have in common: a collection under `/v1/{plural}` whose
//! members are named by id or name, listed as a table or JSON, shown and deleted. The
//! requests and error messages are the same for both, so they live here once.

use anyhow::Context as _;
use serde::de::DeserializeOwned;

use super::http::{segment, ApiClient, ClientArgs};
use super::output;

/// The arguments of a `list` command.
#[derive(clap::Args, Debug)]
pub(crate) struct ListArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The arguments of a `show` command.
#[derive(clap::Args, Debug)]
pub(crate) struct ShowArgs {
    /// Its id or name.
    pub id_or_name: String,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// One collection of the API, named as the messages name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Resource {
    /// One member, as in "cannot show worker w1".
    pub singular: &'static str,
    /// The collection, as in `/v1/workers` and "cannot list workers".
    pub plural: &'static str,
}

impl Resource {
    /// The path of one member.
    pub(crate) fn path(&self, id_or_name: &str) -> anyhow::Result<String> {
        Ok(format!("/v1/{}/{}", self.plural, segment(id_or_name)?))
    }

    /// Lists the collection: a JSON array with `--json`, else the table `print_table` draws.
    pub(crate) async fn list<T: DeserializeOwned + serde::Serialize>(
        &self,
        args: &ListArgs,
        print_table: fn(&[T]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        self.list_where(args, "", print_table).await
    }

    /// [`Self::list`] with a query string (`?source=proxmox`, or empty) the controller filters by.
    pub(crate) async fn list_where<T: DeserializeOwned + serde::Serialize>(
        &self,
        args: &ListArgs,
        query: &str,
        print_table: fn(&[T]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let api = ApiClient::from_args(&args.client)?;
        let list: portcullis_proto::api::List<T> = api
            .get(&format!("/v1/{}{query}", self.plural))
            .await
            .with_context(|| format!("cannot list {}", self.plural))?;
        if args.json {
            output::print_json(&list.items)
        } else {
            print_table(&list.items)
        }
    }

    /// Shows one member with `print`, which is told whether `--json` was given.
    pub(crate) async fn show<T: DeserializeOwned>(
        &self,
        args: &ShowArgs,
        print: fn(&T, bool) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let api = ApiClient::from_args(&args.client)?;
        let member: T = api
            .get(&self.path(&args.id_or_name)?)
            .await
            .with_context(|| format!("cannot show {} {}", self.singular, args.id_or_name))?;
        print(&member, args.json)
    }

    /// Deletes one member.
    pub(crate) async fn delete(&self, client: &ClientArgs, id_or_name: &str) -> anyhow::Result<()> {
        let api = ApiClient::from_args(client)?;
        api.delete(&self.path(id_or_name)?)
            .await
            .with_context(|| format!("cannot delete {} {id_or_name}", self.singular))
    }
}
