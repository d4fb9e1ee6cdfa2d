//! Who acts, as the services see it: a signed-in user (`Caller`) or a background component
//! of the server itself (`SystemActor`), together an `Actor`.
//!
//! This module knows nothing of HTTP: the edge's extractor `extract::Principal` dereferences
//! to the `SignedIn` it holds (the `Caller` and its session's token hash) and through it to
//! the `Caller`, and background code names itself with an `Actor::System` instead of
//! borrowing the operator's account. Services only users call take `&Caller`; those that
//! background code calls too take `impl Into<Actor>` (a `&Caller`, a request's `&Principal`
//! or an `&Actor`). What an actor did is recorded under `Actor::name`: `alice`, or
//! `system:binder`.

use cpn_api_types::identity::Role;
use serde::{Deserialize, Serialize};

/// The tenant of the platform operator: the `admin` account's, and the one the server's own
/// start-up registers objects in.
pub const SYSTEM_TENANT: &str = "system";

/// A signed-in user: whose rights a request (or a workflow that user started) has.
///
/// Serialized as `{user_id, username, tenant, role}`: workflows store their starter this way
/// so that their steps keep acting as that user after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    pub user_id: String,
    pub username: String,
    pub tenant: String,
    pub role: Role,
}

impl Caller {
    /// Operators read and write across tenants.
    pub fn is_operator(&self) -> bool {
        self.role == Role::Operator
    }
}

/// A user signed in through a session (a password login or an API key): the caller, and
/// the hash of the session's token, which names the session for logout and for the account
/// calls that depend on how the caller signed in (API keys may not manage accounts).
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub caller: Caller,
    pub token_hash: String,
}

impl std::ops::Deref for SignedIn {
    type Target = Caller;

    fn deref(&self) -> &Caller {
        &self.caller
    }
}

/// A component of the server acting on its own, with the rights listed per variant. Each
/// has a fixed name (`system:…`) that what it writes records as owner, `by` or
/// `cancelled by`, so nobody mistakes its work for a person's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemActor {
    /// `cpn serve` setting up a new data dir (the demo federation), the local agent's site
    /// and the in-process agents' join tokens. Operator rights, in the operator's tenant: it
    /// runs before anyone can sign in, on the operator's behalf.
    Startup,
    /// The binder turning a stored task of `tenant` into the scheduler's. The rights of a
    /// user of that tenant and no more: the task was authorized when it was submitted, and
    /// the binder may not widen it to another tenant.
    Binder { tenant: String },
    /// The Slurm back end of a site keeping that site's Slurm resources in the registry in
    /// step with what the cluster reports. Operator rights in the registry, because the
    /// site it reports into may belong to any supplier; it writes only resources of the site
    /// it runs, in the site's `tenant`.
    Slurm { tenant: String },
    /// The rules engine running a rule of `tenant` (scale, redeploy, isolate a node, run a
    /// task). Operator rights: only operators may create rules, and the engine fires a rule
    /// only while its owner is still an enabled operator (`runtime::rules`).
    Rules { tenant: String },
}

impl SystemActor {
    /// The name recorded for what this component does.
    pub fn name(&self) -> &'static str {
        match self {
            SystemActor::Startup => "system:startup",
            SystemActor::Binder { .. } => "system:binder",
            SystemActor::Slurm { .. } => "system:slurm",
            SystemActor::Rules { .. } => "system:rules",
        }
    }

    /// The tenant whose objects it writes when a request names none.
    pub fn tenant(&self) -> &str {
        match self {
            SystemActor::Startup => SYSTEM_TENANT,
            SystemActor::Binder { tenant }
            | SystemActor::Slurm { tenant }
            | SystemActor::Rules { tenant } => tenant,
        }
    }

    /// The role whose rights it has (see each variant).
    pub fn role(&self) -> Role {
        match self {
            SystemActor::Startup | SystemActor::Slurm { .. } | SystemActor::Rules { .. } => {
                Role::Operator
            }
            SystemActor::Binder { .. } => Role::User,
        }
    }
}

/// Who performs an action that background code may perform too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(Caller),
    System(SystemActor),
}

impl Actor {
    /// The name recorded as owner or author: the username, or `system:…`.
    pub fn name(&self) -> &str {
        match self {
            Actor::User(c) => &c.username,
            Actor::System(s) => s.name(),
        }
    }

    pub fn tenant(&self) -> &str {
        match self {
            Actor::User(c) => &c.tenant,
            Actor::System(s) => s.tenant(),
        }
    }

    /// The role whose rights the actor has.
    pub fn role(&self) -> Role {
        match self {
            Actor::User(c) => c.role,
            Actor::System(s) => s.role(),
        }
    }

    /// Whether it reads and writes across tenants.
    pub fn is_operator(&self) -> bool {
        self.role() == Role::Operator
    }
}

impl From<&Caller> for Actor {
    fn from(c: &Caller) -> Self {
        Actor::User(c.clone())
    }
}

impl From<&Actor> for Actor {
    fn from(a: &Actor) -> Self {
        a.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_actors_are_named_and_only_the_binder_stays_in_its_tenant() {
        let binder = Actor::System(SystemActor::Binder {
            tenant: "acme".into(),
        });
        assert_eq!(binder.name(), "system:binder");
        assert_eq!(binder.tenant(), "acme");
        assert!(!binder.is_operator());
        let startup = Actor::System(SystemActor::Startup);
        assert_eq!(startup.tenant(), SYSTEM_TENANT);
        assert!(startup.is_operator());
        let user = Actor::from(&Caller {
            user_id: "u1".into(),
            username: "alice".into(),
            tenant: "acme".into(),
            role: Role::Supplier,
        });
        assert_eq!((user.name(), user.role()), ("alice", Role::Supplier));
        assert!(!user.is_operator());
    }

    #[test]
    fn a_caller_is_stored_with_the_fields_workflows_always_stored() {
        let c = Caller {
            user_id: "u1".into(),
            username: "alice".into(),
            tenant: "acme".into(),
            role: Role::User,
        };
        let v = serde_json::to_value(&c).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"user_id": "u1", "username": "alice", "tenant": "acme", "role": "user"})
        );
        assert_eq!(serde_json::from_value::<Caller>(v).unwrap(), c);
    }
}
