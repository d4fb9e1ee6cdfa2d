//! `cpn serve`: hands the parsed flags to the server crate, composes the running server
//! with its in-process agents (the local agent, the demo's emulated nodes: the server crate
//! knows no agent), and runs until stopped.

use crate::cli::{DEFAULT_SIM_DATA, ServeArgs, TlsMode};
use anyhow::{Context, Result, bail};
use cpn_server::TlsSetting;
use cpn_server::{RunningServer, ServeConfig};
use std::path::PathBuf;
use std::time::Duration;

pub async fn run(args: ServeArgs) -> Result<()> {
    if args.node_timeout_ms <= args.heartbeat_ms {
        bail!(
            "--node-timeout-ms ({}) must be longer than --heartbeat-ms ({}), or every node would be lost between two heartbeats",
            args.node_timeout_ms,
            args.heartbeat_ms
        );
    }
    let tls = tls_setting(&args)?;
    let sim_data_dir = match args.sim_data {
        Some(dir) if !dir.is_dir() => bail!("--sim-data {}: no such folder", dir.display()),
        Some(dir) => Some(dir),
        None => Some(PathBuf::from(DEFAULT_SIM_DATA)).filter(|d| d.is_dir()),
    };
    let server = cpn_server::start(ServeConfig {
        data_dir: args.data_dir,
        listen: args.listen,
        load_demo: !args.no_demo,
        sim_data_dir,
        runtime: cpn_server::runtime::RuntimeConfig {
            heartbeat_interval: Duration::from_millis(args.heartbeat_ms.max(100)),
            node_timeout: Duration::from_millis(args.node_timeout_ms.max(500)),
            limits: cpn_server::limits::Limits {
                max_task_output_bytes: args.max_task_output_mib.max(1) << 20,
                max_running_flows_per_tenant: args.max_running_workflows.max(1),
                max_active_simulations_per_tenant: args.max_active_simulations.max(1),
                kept_simulations_per_tenant: args.kept_simulations.max(1),
                condition_deadline: Duration::from_millis(args.condition_deadline_ms.max(10)),
                flow_node_wait: Duration::from_secs(args.flow_node_wait_s),
                unplaceable_wait: Duration::from_secs(args.unplaceable_wait_s),
            },
            scheduler_seed: args.scheduler_seed,
        },
        accounts: cpn_server::auth::AccountsConfig {
            session_idle: chrono::Duration::from_std(args.session_idle)?,
            require_mfa_for_operators: args.require_mfa_for_operators,
            hash_workers: args.hash_workers,
            audit_retention_days: args.audit_retention_days,
        },
        tls,
        max_connections: args.max_connections,
        notify: cpn_server::notify::NotifyConfig {
            smtp_relay: args.smtp_relay,
            smtp_from: Some(args.smtp_from),
            smtp_starttls: args.smtp_starttls,
            smtp_user: args.smtp_user,
            // Secrets only from the environment: a flag would show in `ps`.
            smtp_password: std::env::var("CPN_SMTP_PASSWORD").ok(),
            sms_gateway: args.sms_gateway,
            sms_token: std::env::var("CPN_SMS_TOKEN").ok(),
            public_url: args.public_url,
        },
    })
    .await?;
    let isolation = args.isolation.config();
    if !args.no_local_agent {
        start_local_agent(&server, &args.local_site, &isolation).await?;
    }
    if !args.no_emulated_nodes {
        for agent in crate::emulate::start(&server, &isolation)
            .await
            .context("start the emulated nodes")?
        {
            server.stop_with(agent.stop());
        }
    }
    server.wait().await
}

/// Runs an agent in-process that registers this machine into `site` (created when
/// missing), so the server runs tasks out of the box; it stops with the server.
pub async fn start_local_agent(
    server: &RunningServer,
    site: &str,
    isolation: &cpn_agent::IsolationConfig,
) -> Result<()> {
    server.ensure_site(site).await?;
    let state_dir = server.data_dir.join("agent");
    // The local agent is a node like any other: it joins with a single-use token made
    // here, once, and keeps the credential it gets in its state dir.
    let saved = cpn_agent::saved_credential(&state_dir);
    let join_token = server
        .in_process_agent_token(
            site,
            saved.as_ref().map(|s| s.credential.as_str()),
            "the local agent of cpn serve",
        )
        .await
        .context("issue the local agent's join token")?;
    let mut agent = cpn_agent::AgentConfig::new(server.url.clone(), site.to_string(), state_dir);
    agent.join_token = join_token;
    agent.ca_pem = server.ca_pem();
    agent.name = Some(local_node_name());
    agent.isolation = isolation.clone();
    eprintln!(
        "local agent: this machine is node {:?} of site {site:?} (turn off with --no-local-agent)",
        agent.name.as_deref().unwrap_or_default()
    );
    let agent = cpn_agent::spawn(agent).context("start the local agent")?;
    server.stop_with(agent.stop());
    Ok(())
}

fn local_node_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Plain HTTP only on loopback unless asked for explicitly: elsewhere tokens and passwords
/// would cross the network in clear.
fn tls_setting(args: &ServeArgs) -> Result<TlsSetting> {
    let loopback = args.listen.ip().is_loopback();
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        if args.tls == TlsMode::Off {
            bail!("--tls off contradicts --tls-cert; leave one out");
        }
        return Ok(TlsSetting::Files {
            cert: cert.clone(),
            key: key.clone(),
        });
    }
    let generated = TlsSetting::Generated {
        extra_sans: args.tls_sans.clone(),
    };
    Ok(match args.tls {
        TlsMode::On => generated,
        TlsMode::Auto if loopback || args.insecure_http => TlsSetting::Off,
        TlsMode::Auto => generated,
        TlsMode::Off if loopback || args.insecure_http => TlsSetting::Off,
        TlsMode::Off => bail!(
            "--tls off on {}, which is not a loopback address: tokens and passwords would \
             cross the network in clear; serve HTTPS (leave out --tls off) or pass --insecure-http",
            args.listen
        ),
    })
}
