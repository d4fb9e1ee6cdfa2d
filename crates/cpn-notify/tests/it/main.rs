//! cpn-notify against real components: an aiosmtpd SMTP server on loopback, local HTTP sinks
//! for webhooks and the SMS gateway. One binary, so the crate links its tests once.

mod dispatch;
mod sms;
mod smtp;
mod support;
mod webhook;
