//! Resolving what a request names (targets, a meeting, a caller) against the scenario, and
//! the messages a miss carries: a body copied from Graph's docs names people and meetings
//! that are not in the scenario, and the only hint it gets back is a `resultInfo` or an
//! error message, so those say what was asked and what the scenario has instead.

use signalling::model::{Call, GraphType, IdentityRole, IdentitySet, MeetingInfo};

use crate::scenario::{Meeting, Scenario};

/// Entries named per list before "and N more".
const LISTED: usize = 8;
/// Characters of a request's value quoted back.
const QUOTED: usize = 80;

fn quote(s: &str) -> String {
    let s: String = s.chars().filter(|c| !c.is_control()).take(QUOTED).collect();
    format!("`{s}`")
}

fn list(items: impl ExactSizeIterator<Item = String>, none: &str) -> String {
    let total = items.len();
    if total == 0 {
        return none.to_owned();
    }
    let mut out: Vec<String> = items.take(LISTED).collect();
    if total > LISTED {
        out.push(format!("and {} more", total - LISTED));
    }
    out.join(", ")
}

/// `users: John (id 112f...), Ada (id 98da...)`.
pub(crate) fn users(sc: &Scenario) -> String {
    let items = sc
        .users
        .iter()
        .map(|u| format!("{} (id {})", u.display_name, u.id));
    format!("users: {}", list(items, "none"))
}

/// `phones: +12345678901 (Front desk)`.
pub(crate) fn phones(sc: &Scenario) -> String {
    let items = sc.phones.iter().map(|p| match &p.display_name {
        Some(name) => format!("{} ({name})", p.number),
        None => p.number.clone(),
    });
    format!("phones: {}", list(items, "none"))
}

/// One meeting as an error message names it.
fn meeting(sc: &Scenario, m: &Meeting) -> String {
    let organizer = sc
        .user(&m.organizer)
        .map_or(m.organizer.as_str(), |u| u.display_name.as_str());
    let mut s = match &m.subject {
        Some(subject) => format!("\"{subject}\" (threadId {}", m.thread_id),
        None => format!("(threadId {}", m.thread_id),
    };
    s += &format!(
        ", messageId {}, organizer {organizer} id {}",
        m.message_id, m.organizer
    );
    if let Some(id) = &m.join_meeting_id {
        s += &format!(", joinMeetingId {id}");
    }
    s.push(')');
    s
}

/// `scenario meetings: "Demo" (threadId ..., messageId 0, organizer John id ..., ...)`.
pub(crate) fn meetings(sc: &Scenario) -> String {
    let items = sc.meetings.iter().map(|m| meeting(sc, m));
    format!("scenario meetings: {}", list(items, "none"))
}

/// Why none of a call's targets can be reached (the 480/10037 message). `identities` are the
/// request's `targets[].identity`.
pub(crate) fn unreachable_targets<'a>(
    sc: &Scenario,
    identities: impl IntoIterator<Item = &'a IdentitySet>,
) -> String {
    let mut why = Vec::new();
    let (mut asked_user, mut asked_phone) = (false, false);
    let id_in = |set: &'a IdentitySet, role| set.get(role).and_then(|i| i.id.get());
    for identity in identities {
        if let Some(id) = id_in(identity, IdentityRole::User) {
            asked_user = true;
            why.push(format!(
                "no user with id {} in this scenario",
                quote(id.as_str())
            ));
        } else if let Some(number) = id_in(identity, IdentityRole::Phone) {
            asked_phone = true;
            why.push(format!(
                "no phone number {} in this scenario",
                quote(number.as_str())
            ));
        } else {
            // The first property the set has, as the request wrote it (unknown ones too).
            let kind = identity
                .to_json_value()
                .as_object()
                .and_then(|o| o.keys().find(|k| !k.starts_with('@')).cloned())
                .unwrap_or_else(|| "nothing".to_owned());
            why.push(format!(
                "a target identity with {} cannot be called (call a user or a phone)",
                quote(&kind)
            ));
        }
    }
    if why.is_empty() {
        why.push("the call has no targets".to_owned());
    }
    let mut hint = Vec::new();
    if asked_user || !asked_phone {
        hint.push(users(sc));
    }
    if asked_phone || !asked_user {
        hint.push(phones(sc));
    }
    format!(
        "No callee endpoints were found: {}; {}.",
        why.join("; "),
        hint.join("; ")
    )
}

/// The scenario meeting a join request names: by `joinMeetingIdMeetingInfo` (with its
/// passcode when the meeting has one), or by `chatInfo`'s thread and message id. The error
/// is the 404/11000 message.
pub(crate) fn find_meeting<'s>(sc: &'s Scenario, request: &Call) -> Result<&'s Meeting, String> {
    match request.meeting_info.get() {
        Some(MeetingInfo::JoinMeetingId(info)) => {
            let id = info.join_meeting_id.get().map_or("", String::as_str);
            let passcode = info.passcode.get().map(|p| p.expose());
            let Some(m) = sc.meetings.iter().find(|m| m.has_join_meeting_id(id)) else {
                return Err(format!(
                    "The meeting was not found: no meeting with joinMeetingId {} in this scenario; {}.",
                    quote(id),
                    meetings(sc)
                ));
            };
            match &m.passcode {
                // The expected passcode is not quoted: messages reach logs and the dashboard.
                Some(p) if passcode != Some(p.as_str()) => Err(format!(
                    "The meeting was not found: the passcode {} for joinMeetingId {}; the scenario sets it (see its description).",
                    if passcode.is_some() {
                        "does not match"
                    } else {
                        "is missing"
                    },
                    quote(id)
                )),
                _ => Ok(m),
            }
        }
        Some(MeetingInfo::Token(_)) => Err(format!(
            "The meeting was not found: the emulator cannot resolve a tokenMeetingInfo; join with chatInfo + organizerMeetingInfo or with joinMeetingIdMeetingInfo; {}.",
            meetings(sc)
        )),
        _ => {
            let chat = request.chat_info.get();
            let thread = chat
                .and_then(|c| c.thread_id.get())
                .map_or("", String::as_str);
            let message = chat
                .and_then(|c| c.message_id.get())
                .map_or("0", String::as_str);
            if let Some(m) = sc.meeting(thread, message) {
                return Ok(m);
            }
            let same_thread: Vec<&str> = sc
                .meetings
                .iter()
                .filter(|m| m.thread_id == thread)
                .map(|m| m.message_id.as_str())
                .collect();
            let why = if same_thread.is_empty() {
                format!(
                    "no meeting with chatInfo.threadId {} in this scenario",
                    quote(thread)
                )
            } else {
                format!(
                    "chatInfo.threadId {} has no messageId {} in this scenario (it has {})",
                    quote(thread),
                    quote(message),
                    same_thread.join(", ")
                )
            };
            Err(format!(
                "The meeting was not found: {why}; {}.",
                meetings(sc)
            ))
        }
    }
}

/// Why `from` cannot call the bot (`POST /emulator/incoming`).
pub(crate) fn unknown_caller(sc: &Scenario, from: &str) -> String {
    format!(
        "'from' {} is neither a user id nor a phone number of the scenario; {}; {}.",
        quote(from),
        users(sc),
        phones(sc)
    )
}

/// Why an invited user is not there.
pub(crate) fn unknown_user(sc: &Scenario, id: &str) -> String {
    format!(
        "No user with id {} in this scenario; {}.",
        quote(id),
        users(sc)
    )
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn call(v: Value) -> Call {
        Call::from_json_value(v).expect("a call")
    }

    fn set(v: Value) -> IdentitySet {
        IdentitySet::from_json_value(v).expect("an identity set")
    }

    #[test]
    fn an_unknown_user_names_the_scenario_users() {
        let sc = Scenario::default();
        let m = unreachable_targets(
            &sc,
            &[set(
                json!({ "user": { "id": "8e2d6f0a-0000-0000-0000-000000000000" } }),
            )],
        );
        assert!(
            m.contains("no user with id `8e2d6f0a-0000-0000-0000-000000000000`"),
            "{m}"
        );
        assert!(
            m.contains("Grace (id 550fae72-d251-43ec-868c-373732c2704f)"),
            "{m}"
        );
        assert!(!m.contains("phones:"), "{m}");
        let m = unreachable_targets(&sc, &[set(json!({ "phone": { "id": "+4930123" } }))]);
        assert!(m.contains("no phone number `+4930123`"), "{m}");
        assert!(m.contains("+12345678901 (Front desk)"), "{m}");
        let m = unreachable_targets(&sc, &[set(json!({ "application": { "id": "x" } }))]);
        assert!(m.contains("`application`") && m.contains("users:"), "{m}");
    }

    #[test]
    fn a_missing_meeting_names_the_scenario_meetings() {
        let sc = Scenario::default();
        let ours = &sc.meetings[0];
        let docs = call(json!({
            "chatInfo": { "threadId": "19:meeting_Win6Ydo4wsMijFjZS00ZGVjLTk5MGUtOTRjNWY2NmNkYTFm@thread.v2", "messageId": "0" },
            "meetingInfo": { "@odata.type": "#microsoft.graph.organizerMeetingInfo" },
        }));
        let m = find_meeting(&sc, &docs).unwrap_err();
        assert!(
            m.contains("no meeting with chatInfo.threadId `19:meeting_Win6"),
            "{m}"
        );
        assert!(
            m.contains(&ours.thread_id) && m.contains("organizer John"),
            "{m}"
        );
        let wrong_message =
            call(json!({ "chatInfo": { "threadId": ours.thread_id, "messageId": "7" } }));
        let m = find_meeting(&sc, &wrong_message).unwrap_err();
        assert!(
            m.contains("has no messageId `7`") && m.contains("(it has 0)"),
            "{m}"
        );
        let token = call(
            json!({ "meetingInfo": { "@odata.type": "#microsoft.graph.tokenMeetingInfo", "token": "s3cret" } }),
        );
        let m = find_meeting(&sc, &token).unwrap_err();
        assert!(
            m.contains("tokenMeetingInfo") && !m.contains("s3cret"),
            "{m}"
        );
    }

    #[test]
    fn join_meeting_id_finds_the_meeting_and_checks_its_passcode() {
        let sc = Scenario::default();
        let ours = &sc.meetings[0];
        let id = ours.join_meeting_id.clone().unwrap();
        let pass = ours.passcode.clone().unwrap();
        let by_id = |id: &str, passcode: Option<&str>| {
            call(json!({ "meetingInfo": {
                "@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo",
                "joinMeetingId": id, "passcode": passcode } }))
        };
        assert_eq!(find_meeting(&sc, &by_id(&id, Some(&pass))), Ok(ours));
        let compact: String = id.split_whitespace().collect();
        assert_eq!(find_meeting(&sc, &by_id(&compact, Some(&pass))), Ok(ours));
        let m = find_meeting(&sc, &by_id(&id, Some("wrong"))).unwrap_err();
        assert!(m.contains("does not match") && !m.contains(&pass), "{m}");
        let m = find_meeting(&sc, &by_id(&id, None)).unwrap_err();
        assert!(m.contains("is missing"), "{m}");
        let m = find_meeting(&sc, &by_id("999", Some(&pass))).unwrap_err();
        assert!(
            m.contains("no meeting with joinMeetingId `999`") && m.contains(&id),
            "{m}"
        );
    }

    #[test]
    fn long_lists_are_cut_and_request_values_bounded() {
        let sc = Scenario {
            users: (0..20)
                .map(|i| crate::scenario::User {
                    id: format!("u{i}"),
                    display_name: format!("User {i}"),
                    tenant_id: None,
                    says: Default::default(),
                    answer: Default::default(),
                })
                .collect(),
            ..Scenario::default()
        };
        let m = unknown_user(&sc, &"x\n".repeat(500));
        assert!(m.contains("and 12 more"), "{m}");
        assert!(m.len() < 600 && !m.contains('\n'), "{m}");
    }
}
