//! One client connection: reading requests, writing replies, simple bind, the extended
//! operations AD answers, and refusing writes. Searches are in [`super::search`].

use std::collections::HashMap;
use std::sync::Arc;

use bytes::BytesMut;
use ldap3_proto::proto::{
    LdapBindCred, LdapBindRequest, LdapBindResponse, LdapExtendedRequest, LdapExtendedResponse,
    LdapMsg, LdapOp, LdapResult, LdapResultCode,
};
use ldap3_proto::simple::DisconnectionNotice;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_util::codec::{Decoder, Encoder};

use super::Shared;
use super::codec::AdCodec;
use super::directory::normalize_dn;
use super::search::PagedSearch;

const WHO_AM_I: &str = "1.3.6.1.4.1.4203.1.11.3";

// AD's diagnostic messages, so logs from the tests read like logs from the field.
const INVALID_CREDENTIALS: &str =
    "80090308: LdapErr: DSID-0C090439, comment: AcceptSecurityContext error, data 52e, v4563";

/// What to do with the connection once a request's replies are written.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Flow {
    /// Read the next request.
    Continue,
    /// Close the connection.
    Close,
}

/// Per-connection state.
pub(super) struct Session {
    pub(super) shared: Arc<Shared>,
    /// The DN of a successful bind; `None` while anonymous.
    pub(super) bound: Option<String>,
    /// Paged searches between pages, by cookie.
    pub(super) pages: HashMap<Vec<u8>, PagedSearch>,
    pub(super) next_cookie: u64,
    /// Search result entries sent on this connection, for the injected fault.
    pub(super) entries_sent: usize,
}

/// Serves one connection until the client leaves, the server stops or a fault is injected.
pub(super) async fn run(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut codec = AdCodec;
    let mut input = BytesMut::with_capacity(8 * 1024);
    let mut session = Session {
        shared,
        bound: None,
        pages: HashMap::new(),
        next_cookie: 1,
        entries_sent: 0,
    };
    loop {
        let message = match codec.decode(&mut input) {
            Ok(Some(message)) => message,
            Ok(None) => match stream.read_buf(&mut input).await {
                Ok(0) | Err(_) => return,
                Ok(_) => continue,
            },
            Err(_) => {
                let notice = DisconnectionNotice::gen_response(
                    LdapResultCode::ProtocolError,
                    "undecodable request",
                );
                let _ = write(&mut stream, &mut codec, vec![notice]).await;
                return;
            }
        };
        let (replies, flow) = session.handle(message);
        if write(&mut stream, &mut codec, replies).await.is_err() || flow == Flow::Close {
            let _ = stream.shutdown().await;
            return;
        }
    }
}

async fn write(
    stream: &mut TcpStream,
    codec: &mut AdCodec,
    replies: Vec<LdapMsg>,
) -> std::io::Result<()> {
    let mut output = BytesMut::new();
    for reply in replies {
        codec.encode(reply, &mut output)?;
    }
    stream.write_all(&output).await?;
    stream.flush().await
}

pub(super) fn message(msgid: i32, op: LdapOp) -> LdapMsg {
    LdapMsg {
        msgid,
        op,
        ctrl: Vec::new(),
    }
}

pub(super) fn result(code: LdapResultCode, matcheddn: String, message: &str) -> LdapResult {
    LdapResult {
        code,
        matcheddn,
        message: message.to_owned(),
        referral: Vec::new(),
    }
}

pub(super) fn done(msgid: i32, code: LdapResultCode, text: &str) -> LdapMsg {
    message(
        msgid,
        LdapOp::SearchResultDone(result(code, String::new(), text)),
    )
}

impl Session {
    fn handle(&mut self, request: LdapMsg) -> (Vec<LdapMsg>, Flow) {
        let LdapMsg { msgid, op, ctrl } = request;
        let read_only = || {
            result(
                LdapResultCode::UnwillingToPerform,
                String::new(),
                "read-only test directory",
            )
        };
        let reply = match op {
            LdapOp::BindRequest(bind) => self.bind(msgid, bind),
            LdapOp::SearchRequest(search) => return self.search(msgid, &search, &ctrl),
            LdapOp::ExtendedRequest(extended) => self.extended(msgid, &extended),
            LdapOp::UnbindRequest => return (Vec::new(), Flow::Close),
            LdapOp::AbandonRequest(_) => return (Vec::new(), Flow::Continue),
            LdapOp::AddRequest(_) => message(msgid, LdapOp::AddResponse(read_only())),
            LdapOp::ModifyRequest(_) => message(msgid, LdapOp::ModifyResponse(read_only())),
            LdapOp::DelRequest(_) => message(msgid, LdapOp::DelResponse(read_only())),
            LdapOp::ModifyDNRequest(_) => message(msgid, LdapOp::ModifyDNResponse(read_only())),
            LdapOp::CompareRequest(_) => message(msgid, LdapOp::CompareResult(read_only())),
            _ => {
                let notice = DisconnectionNotice::gen_response(
                    LdapResultCode::ProtocolError,
                    "not a request",
                );
                return (vec![notice], Flow::Close);
            }
        };
        (vec![reply], Flow::Continue)
    }

    /// Simple bind. An empty password is an anonymous (unauthenticated) bind that succeeds,
    /// as it does on AD, and leaves the connection unable to search.
    fn bind(&mut self, msgid: i32, request: LdapBindRequest) -> LdapMsg {
        self.bound = None;
        let res = match request.cred {
            LdapBindCred::Simple(password) if password.is_empty() => {
                result(LdapResultCode::Success, String::new(), "")
            }
            LdapBindCred::Simple(password) => match &self.shared.config.bind {
                Some((dn, secret))
                    if normalize_dn(dn) == normalize_dn(&request.dn) && *secret == password =>
                {
                    self.bound = Some(request.dn);
                    result(LdapResultCode::Success, String::new(), "")
                }
                _ => result(
                    LdapResultCode::InvalidCredentials,
                    String::new(),
                    INVALID_CREDENTIALS,
                ),
            },
            _ => result(
                LdapResultCode::AuthMethodNotSupported,
                String::new(),
                "only simple bind is emulated",
            ),
        };
        message(
            msgid,
            LdapOp::BindResponse(LdapBindResponse {
                res,
                saslcreds: None,
            }),
        )
    }

    fn extended(&self, msgid: i32, request: &LdapExtendedRequest) -> LdapMsg {
        let (res, value) = if request.name == WHO_AM_I {
            let identity = self
                .bound
                .as_ref()
                .map(|dn| format!("dn:{dn}"))
                .unwrap_or_default();
            (
                result(LdapResultCode::Success, String::new(), ""),
                Some(identity.into_bytes()),
            )
        } else {
            let text = format!("unsupported extended operation {}", request.name);
            (
                result(LdapResultCode::ProtocolError, String::new(), &text),
                None,
            )
        };
        message(
            msgid,
            LdapOp::ExtendedResponse(LdapExtendedResponse {
                res,
                name: None,
                value,
            }),
        )
    }
}
