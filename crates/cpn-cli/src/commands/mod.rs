//! One module per command; `dispatch` routes a parsed command line to it.

pub mod account;
pub mod agent;
pub mod audit;
pub mod auth;
pub mod bench;
pub mod bench_livestate;
pub mod bench_login;
pub mod bench_metering;
pub mod bench_tasks;
pub mod decision;
pub mod events;
pub mod flow;
pub mod identity;
pub mod join;
pub mod link;
pub mod market;
pub mod node;
pub mod notify;
pub mod plan;
pub mod policy;
pub mod registry;
pub mod rule;
pub mod scenario;
pub mod schedule;
pub mod serve;
pub mod sim;
pub mod sim_api;
pub mod sim_builtin;
pub mod sim_federation;
pub mod sim_plot;
pub mod tag;
pub mod task;
pub mod template;
pub mod topology;

use crate::cli::{
    Cli, Command, DEFAULT_SERVER, LinkCmd, OutputFormat, PolicyCmd, ResourceCmd, SiteCmd, TagCmd,
};
use crate::client::Client;
use anyhow::Result;
use registry::Kind;

/// What every client command needs: the API client and the output format.
pub struct Ctx {
    pub client: Client,
    pub output: OutputFormat,
}

/// Ends `cpn` with this exit code and no further message (a task's own exit code, or 1
/// after the failures were already reported).
#[derive(Debug)]
pub struct ExitWith(pub u8);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "exit code {}", self.0)
    }
}

impl std::error::Error for ExitWith {}

impl Ctx {
    pub fn table(&self) -> bool {
        self.output == OutputFormat::Table
    }
}

pub async fn dispatch(cli: Cli) -> Result<()> {
    let cli = match cli.command {
        Command::Serve(args) => return serve::run(*args).await,
        Command::Bench(crate::cli::BenchCmd::Registry(args)) => {
            return bench::registry(args, cli.global.token).await;
        }
        Command::Bench(crate::cli::BenchCmd::Schedule(args)) => return bench::schedule(args),
        Command::Bench(crate::cli::BenchCmd::Tasks(args)) => return bench_tasks::run(args).await,
        Command::Bench(crate::cli::BenchCmd::Login(args)) => return bench_login::run(args).await,
        Command::Bench(crate::cli::BenchCmd::Livestate(args)) => return bench_livestate::run(args),
        Command::Bench(crate::cli::BenchCmd::Metering(args)) => {
            return bench_metering::run(args).await;
        }
        Command::Sim(sim::SimCmd::Gpu(args)) => return sim::gpu(args),
        _ => cli,
    };
    // An empty CPN_SERVER counts as unset.
    let given_server = cli
        .global
        .server
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from);
    if let Command::Agent(args) = cli.command {
        return agent::run(args, given_server, cli.global.token, cli.global.ca_file).await;
    }
    let server = given_server.as_deref().unwrap_or(DEFAULT_SERVER);
    let ctx = Ctx {
        client: Client::new(server, cli.global.token, cli.global.ca_file.as_deref())?,
        output: cli.global.output,
    };
    match cli.command {
        Command::Serve(_) | Command::Bench(_) | Command::Sim(sim::SimCmd::Gpu(_)) => {
            unreachable!("handled above")
        }
        Command::Sim(cmd) => sim_api::run(&ctx, cmd).await,
        Command::Platform(cmd) => registry::run(&ctx, Kind::Platform, cmd).await,
        Command::Cloud(cmd) => registry::run(&ctx, Kind::Cloud, cmd).await,
        Command::Site(SiteCmd::Registry(cmd)) => registry::run(&ctx, Kind::Site, cmd).await,
        Command::Site(SiteCmd::Status { name }) => node::site_status(&ctx, &name).await,
        Command::Site(SiteCmd::Capacity { name }) => {
            node::site_capacity(&ctx, name.as_deref()).await
        }
        Command::Site(SiteCmd::JoinToken(cmd)) => join::join_token(&ctx, cmd).await,
        Command::Resource(ResourceCmd::Registry(cmd)) => {
            registry::run(&ctx, Kind::Resource, cmd).await
        }
        Command::Resource(ResourceCmd::Isolate { name, reason }) => {
            node::isolate_resource(&ctx, &name, true, reason).await
        }
        Command::Resource(ResourceCmd::Unisolate { name }) => {
            node::isolate_resource(&ctx, &name, false, None).await
        }
        Command::Task(cmd) => task::run(&ctx, cmd).await,
        Command::Flow(cmd) => flow::run(&ctx, cmd).await,
        Command::Template(cmd) => template::run(&ctx, cmd).await,
        Command::Plan(cmd) => plan::run(&ctx, cmd).await,
        Command::Node(cmd) => node::node(&ctx, cmd).await,
        Command::Alloc(cmd) => node::alloc(&ctx, cmd).await,
        Command::Op(cmd) => node::op(&ctx, cmd).await,
        Command::Events(args) => events::run(&ctx, args).await,
        Command::Rule(cmd) => rule::rule(&ctx, cmd).await,
        Command::Market(cmd) => market::market(&ctx, cmd).await,
        Command::Lease(cmd) => market::lease(&ctx, cmd).await,
        Command::Billing(cmd) => market::billing(&ctx, cmd).await,
        Command::Agent(_) => unreachable!("handled above"),
        Command::Link(LinkCmd::Registry(cmd)) => registry::run(&ctx, Kind::Link, cmd).await,
        Command::Link(LinkCmd::Metrics(args)) => link::metrics(&ctx, args).await,
        Command::Tag(TagCmd::Registry(cmd)) => registry::run(&ctx, Kind::Tag, cmd).await,
        Command::Tag(TagCmd::Apply(args)) => tag::apply(&ctx, args).await,
        Command::Tag(TagCmd::Remove(args)) => tag::remove(&ctx, args).await,
        Command::Policy(PolicyCmd::Registry(cmd)) => registry::run(&ctx, Kind::Policy, cmd).await,
        Command::Policy(PolicyCmd::Versions { name }) => policy::versions(&ctx, &name).await,
        Command::Policy(PolicyCmd::Rollback { name, to }) => {
            policy::rollback(&ctx, &name, to).await
        }
        Command::Explain(args) => schedule::explain(&ctx, args).await,
        Command::DryRun(args) => schedule::dry_run(&ctx, args).await,
        Command::Decision(cmd) => decision::run(&ctx, cmd).await,
        Command::Topology(args) => topology::run(&ctx, args).await,
        Command::Scenario(cmd) => scenario::run(&ctx, cmd).await,
        Command::Login(args) => auth::login(&ctx, args).await,
        Command::Logout => auth::logout(&ctx).await,
        Command::Whoami => auth::whoami(&ctx).await,
        Command::Tenant(cmd) => identity::tenant(&ctx, cmd).await,
        Command::User(cmd) => identity::user(&ctx, cmd).await,
        Command::Account(cmd) => account::run(&ctx, cmd).await,
        Command::Notify(cmd) => notify::run(&ctx, cmd).await,
        Command::ApiKey(cmd) => identity::api_key(&ctx, cmd).await,
        Command::Mfa(cmd) => identity::mfa(&ctx, cmd).await,
        Command::Admin(cmd) => identity::admin(&ctx, cmd).await,
        Command::Audit(args) => audit::run(&ctx, args).await,
    }
}
