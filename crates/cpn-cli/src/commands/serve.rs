//! `cpn serve`: hands the parsed flags to the server crate and runs it until stopped.

use crate::cli::{DEFAULT_SIM_DATA, ServeArgs, TlsMode};
use anyhow::{Result, bail};
use cpn_server::ServeConfig;
use cpn_server::tls::TlsSetting;
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
    cpn_server::run(ServeConfig {
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
        local_agent: (!args.no_local_agent).then_some(args.local_site),
        accounts: cpn_server::auth::AccountsConfig {
            session_idle: chrono::Duration::from_std(args.session_idle)?,
            require_mfa_for_operators: args.require_mfa_for_operators,
            hash_workers: args.hash_workers,
            audit_retention_days: args.audit_retention_days,
        },
        tls,
        max_connections: args.max_connections,
        local_agent_isolation: args.isolation.config(),
        emulated_nodes: !args.no_emulated_nodes,
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
    .await
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
