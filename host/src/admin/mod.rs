//! Operator actions on a running node: publish a game module (new sessions
//! only, or migrate live sessions at their next event boundary, after a dry
//! run: [`publish`], [`trial`]), list sessions, drain, show the cluster. [`listener`] serves them on the operator listener
//! (`--admin-listen`, apart from the players'): [`http`] under `/admin` behind the
//! bearer [`token`], with `/metrics`; [`client`] is the `minotaur
//! publish`/`sessions`/`drain`/`cluster`/`health` side.

pub mod client;
pub mod cluster;
pub mod http;
pub mod listener;
pub mod publish;
pub mod token;
pub mod trial;

pub use publish::{publish, PublishError, PublishOptions, PublishReport};
pub use token::{token_path, AdminToken, TokenError};

use minotaur_state::SwapPolicy;

pub fn policy_name(p: SwapPolicy) -> &'static str {
    match p {
        SwapPolicy::NewSessionsOnly => "new",
        SwapPolicy::MigrateLive => "migrate",
    }
}
