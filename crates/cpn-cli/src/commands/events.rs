//! `cpn events`: the event log (task state changes, node state, operations, alarms) as a
//! table, or followed live over Server-Sent Events, reconnecting with `Last-Event-ID` so
//! that nothing is missed or repeated across a dropped connection.

use super::Ctx;
use super::task::truncate;
use crate::cli::OutputFormat;
use crate::client::{ApiError, decode};
use crate::output;
use anyhow::{Context, Result};
use chrono::SecondsFormat;
use clap::Args;
use cpn_api_types::events::EventView;
use std::time::Duration;

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  cpn events
  cpn events --types task,alarm --after 120
  cpn events --follow --types alarm -o json")]
pub struct EventsArgs {
    /// Only these event types, comma-separated; a prefix before the dot matches all its
    /// types (`task` matches `task.state`). Types: task.state, node.state, operation, alarm.
    #[arg(long, value_name = "TYPES")]
    pub types: Option<String>,
    /// Only events after this id.
    #[arg(long, value_name = "ID")]
    pub after: Option<u64>,
    /// At most this many events (without --follow).
    #[arg(long, value_name = "N", conflicts_with = "follow")]
    pub limit: Option<u32>,
    /// Keep printing events as they happen (Server-Sent Events), until interrupted.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

pub async fn run(ctx: &Ctx, args: EventsArgs) -> Result<()> {
    if args.follow {
        return follow(ctx, &args).await;
    }
    let mut query = Vec::new();
    if let Some(t) = &args.types {
        query.push(("types", t.clone()));
    }
    if let Some(a) = args.after {
        query.push(("after", a.to_string()));
    }
    if let Some(l) = args.limit {
        query.push(("limit", l.to_string()));
    }
    let value = ctx
        .client
        .get(&["api", "v1", "events", "log"], &query)
        .await
        .context("reading the event log")?;
    if !ctx.table() {
        return output::print_raw(ctx.output, &value);
    }
    let events: Vec<EventView> = decode(&value, "events")?;
    if events.is_empty() {
        eprintln!("no events");
        return Ok(());
    }
    let mut t = output::table(&["ID", "TIME", "TYPE", "SUBJECT", "SEVERITY", "MESSAGE"]);
    for e in &events {
        t.add_row(vec![
            e.id.to_string(),
            e.at.to_rfc3339_opts(SecondsFormat::Secs, true),
            e.event_type.clone(),
            e.subject.clone(),
            output::wire(&e.severity),
            truncate(&e.message, 80),
        ]);
    }
    output::print_table(&t)
}

/// One line of the followed stream in table mode.
fn line(e: &EventView) -> String {
    format!(
        "{:<6}   {:<20}   {:<10}   {:<38}   {:<8}   {}",
        e.id,
        e.at.to_rfc3339_opts(SecondsFormat::Secs, true),
        e.event_type,
        e.subject,
        output::wire(&e.severity),
        truncate(&e.message, 120)
    )
}

fn print_event(format: OutputFormat, data: &str, event: &EventView) -> Result<()> {
    match format {
        OutputFormat::Table => output::emit(&line(event)),
        OutputFormat::Json => output::emit(data.trim()),
        OutputFormat::Yaml => {
            let value: serde_json::Value = serde_json::from_str(data)?;
            let text = serde_yaml::to_string(&value).context("formatting YAML")?;
            output::emit(&format!("---\n{text}"))
        }
    }
}

/// Parses complete SSE messages off the front of `buf`: returns (id, data) per message
/// that carries data; comments (keep-alives) and partial messages are skipped or kept.
fn take_messages(buf: &mut String) -> Vec<(Option<u64>, String)> {
    let mut out = Vec::new();
    loop {
        let normalized = buf.replace("\r\n", "\n");
        if normalized.len() != buf.len() {
            *buf = normalized;
        }
        let Some(end) = buf.find("\n\n") else {
            return out;
        };
        let block: String = buf.drain(..end + 2).collect();
        let mut id = None;
        let mut data: Vec<&str> = Vec::new();
        for l in block.lines() {
            if l.starts_with(':') {
                continue;
            }
            let (field, value) = l.split_once(':').unwrap_or((l, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "id" => id = value.trim().parse().ok(),
                "data" => data.push(value),
                _ => {}
            }
        }
        if !data.is_empty() {
            out.push((id, data.join("\n")));
        }
    }
}

async fn follow(ctx: &Ctx, args: &EventsArgs) -> Result<()> {
    let mut query = Vec::new();
    if let Some(t) = &args.types {
        query.push(("types", t.clone()));
    }
    let mut last = args.after;
    let mut delay = Duration::from_millis(500);
    if ctx.table() {
        output::emit(&format!(
            "{:<6}   {:<20}   {:<10}   {:<38}   {:<8}   MESSAGE",
            "ID", "TIME", "TYPE", "SUBJECT", "SEVERITY"
        ))?;
    }
    loop {
        let headers: Vec<(&str, String)> = last
            .map(|id| ("Last-Event-ID", id.to_string()))
            .into_iter()
            .collect();
        let resp = ctx
            .client
            .get_stream(&["api", "v1", "events"], &query, &headers)
            .await;
        let mut resp = match resp {
            Ok(r) => r,
            Err(e) if e.downcast_ref::<ApiError>().is_some() => {
                return Err(e.context("following events"));
            }
            Err(e) => {
                let e = format!("{e:#}").replace('\n', "; ");
                eprintln!("events: {e}; retrying in {:.1}s", delay.as_secs_f64());
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
                continue;
            }
        };
        let mut buf = String::new();
        let mut pending = Vec::new();
        let ended = loop {
            match resp.chunk().await {
                Ok(Some(chunk)) => {
                    pending.extend_from_slice(&chunk);
                    // Keep an incomplete UTF-8 sequence for the next chunk.
                    let valid = match std::str::from_utf8(&pending) {
                        Ok(s) => s.len(),
                        Err(e) => e.valid_up_to(),
                    };
                    let text: Vec<u8> = pending.drain(..valid).collect();
                    buf.push_str(&String::from_utf8_lossy(&text));
                    for (id, data) in take_messages(&mut buf) {
                        let event: EventView = serde_json::from_str(&data).with_context(|| {
                            format!("an event the server sent is unreadable: {data}")
                        })?;
                        print_event(ctx.output, &data, &event)?;
                        last = Some(id.unwrap_or(event.id));
                        delay = Duration::from_millis(500);
                    }
                }
                Ok(None) => break "the server closed the stream".to_owned(),
                Err(e) => break format!("{:#}", ctx.client.stream_error(e)),
            }
        };
        eprintln!(
            "events: {ended}; reconnecting in {:.1}s",
            delay.as_secs_f64()
        );
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_messages_are_split_and_comments_skipped() {
        let mut buf = String::from(
            ":keep-alive\n\nid: 7\nevent: alarm\ndata: {\"a\":1}\n\nid: 8\r\ndata: x\r\n\r\nid: 9\ndata: part",
        );
        let msgs = take_messages(&mut buf);
        assert_eq!(
            msgs,
            vec![(Some(7), "{\"a\":1}".to_owned()), (Some(8), "x".to_owned())]
        );
        assert_eq!(buf, "id: 9\ndata: part");
    }
}
