//! Teams meeting join URLs: what they say about the meeting.

/// What a Teams meeting join URL
/// (`https://teams.microsoft.com/l/meetup-join/{thread}/{message}?context={"Tid":..,"Oid":..}`)
/// says: the chat thread and message of the meeting and, from its `context`, the organizer
/// and their tenant. [`CallRequest::join_meeting_url`](super::CallRequest::join_meeting_url)
/// turns it into `chatInfo` + `organizerMeetingInfo`, as Graph's SDKs read such a link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JoinWebUrl {
    /// `chatInfo.threadId`, decoded (`19:meeting_...@thread.v2`).
    pub thread_id: String,
    /// `chatInfo.messageId` (`0` for a scheduled meeting, and when the URL has none).
    pub message_id: String,
    /// The organizer's tenant (`context.Tid`), if the URL has it.
    pub tenant_id: Option<String>,
    /// The organizer's user id (`context.Oid`), if the URL has it.
    pub organizer_id: Option<String>,
}

impl JoinWebUrl {
    /// Parses a `.../l/meetup-join/{thread}/{message}?context={..}` URL (any host, so a real
    /// Teams link and an emulator scenario's link read the same). `None` when it is not one:
    /// no thread, an empty message segment, a bad escape, a control character in the thread.
    /// A context that is missing or not JSON leaves the organizer and tenant unknown.
    pub fn parse(url: &str) -> Option<Self> {
        let (_, rest) = url.trim().split_once("/l/meetup-join/")?;
        let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
        let mut segments = path.split('/');
        let thread_id = percent_decode(segments.next()?)?;
        let message_id = percent_decode(segments.next().unwrap_or("0"))?;
        if thread_id.is_empty() || message_id.is_empty() || thread_id.chars().any(char::is_control)
        {
            return None;
        }
        let context = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("context="))
            .and_then(percent_decode)
            .and_then(|c| serde_json::from_str::<serde_json::Value>(&c).ok());
        let field = |k: &str| {
            context
                .as_ref()
                .and_then(|c| c[k].as_str())
                .filter(|v| !v.trim().is_empty())
                .map(str::to_owned)
        };
        Some(Self {
            thread_id,
            message_id,
            tenant_id: field("Tid"),
            organizer_id: field("Oid"),
        })
    }
}

/// Decodes `%XX` escapes; `None` on a bad escape or bytes that are not UTF-8.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
