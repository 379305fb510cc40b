//! Two-factor codes by email: one SMTP connection per message through `lettre`,
//! secured as `[server.smtp]` says (STARTTLS required by default).

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::config::{SmtpConfig, SmtpTls};

/// Why a mailer could not be set up or a message not sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A setting is unusable.
    #[error("smtp: {0}")]
    Settings(String),
    /// The server refused or could not be reached.
    #[error("smtp: cannot send to {to}: {cause}")]
    Send {
        /// The recipient.
        to: String,
        /// Why.
        cause: String,
    },
}

/// Sends two-factor codes.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .finish()
    }
}

impl Mailer {
    /// A mailer for `config`.
    ///
    /// # Errors
    /// [`MailError::Settings`] for an unusable sender, host or password variable.
    pub fn new(config: &SmtpConfig) -> Result<Self, MailError> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|err| MailError::Settings(format!("from `{}`: {err}", config.from)))?;
        let builder = match config.tls {
            SmtpTls::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&config.host),
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&config.host),
            SmtpTls::Plain => Ok(AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(
                &config.host,
            )),
        }
        .map_err(|err| MailError::Settings(format!("host `{}`: {err}", config.host)))?;
        let mut builder = builder.timeout(Some(Duration::from_secs(20)));
        if let Some(port) = config.port {
            builder = builder.port(port);
        }
        if let Some(user) = &config.username {
            let password = match &config.password_env {
                Some(name) => std::env::var(name).map_err(|_| {
                    MailError::Settings(format!("environment variable {name} is not set"))
                })?,
                None => String::new(),
            };
            builder = builder.credentials(Credentials::new(user.clone(), password));
        }
        Ok(Self {
            transport: builder.build(),
            from,
        })
    }

    /// Sends `code` to `to`, valid for `ttl_secs`.
    ///
    /// # Errors
    /// [`MailError`] when the address is invalid or the server does not take it.
    pub async fn send_code(&self, to: &str, code: &str, ttl_secs: u64) -> Result<(), MailError> {
        let failed = |cause: String| MailError::Send {
            to: to.to_owned(),
            cause,
        };
        let recipient: Mailbox = to.parse().map_err(|err| failed(format!("{err}")))?;
        let minutes = ttl_secs.div_ceil(60);
        let message = Message::builder()
            .from(self.from.clone())
            .to(recipient)
            .subject(format!("abacsync verification code: {code}"))
            .body(format!(
                "Your abacsync verification code is {code}.\n\nIt is valid for {minutes} minute(s) and can be used once.\nIf you did not ask for it, someone knows your session token: log out everywhere.\n"
            ))
            .map_err(|err| failed(err.to_string()))?;
        self.transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|err| failed(err.to_string()))
    }
}
