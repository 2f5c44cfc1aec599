//! A scenario described for people: who can be called, which meetings can be joined and how,
//! and where the emulator's endpoints are. Printed by the CLI when the emulator starts.

use std::fmt::Write as _;

use crate::scenario::{ALL_PERMISSIONS, Answer, Lobby, Scenario};

impl Scenario {
    /// A compact, multi-line description of the scenario for the emulator at `base_url`
    /// (`http://HOST:PORT`): its endpoints (Graph API, tokens, the join page, the dashboard),
    /// each app (id and tenant, never its secret), user (name, id, what they say, how they
    /// answer), phone number and meeting (subject, organizer, `threadId` / `messageId`,
    /// join meeting id and passcode, Teams-style join URL, who is in it).
    ///
    /// ```
    /// let text = emulator::scenario::Scenario::default().describe("http://127.0.0.1:5000");
    /// assert!(text.contains("http://127.0.0.1:5000/join"));
    /// assert!(text.contains("Grace"));
    /// ```
    pub fn describe(&self, base_url: &str) -> String {
        let base = base_url.trim_end_matches('/');
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(s.trim_end());
            out.push('\n');
        };
        line(format!("Graph API   {base}/v1.0 (or {base}/beta)"));
        line(format!("Tokens      {base}/{{tenant}}/oauth2/v2.0/token"));
        line(format!(
            "Join page   {base}/join (?call=CALL_ID&name=NAME joins a call from a browser)"
        ));
        line(format!("Dashboard   {base}/"));
        for app in &self.apps {
            let roles = if ALL_PERMISSIONS
                .iter()
                .all(|p| app.roles.iter().any(|r| r == p))
            {
                "all calling permissions".to_owned()
            } else if app.roles.is_empty() {
                "no permissions".to_owned()
            } else {
                app.roles.join(", ")
            };
            line(format!(
                "App         {} in tenant {} ({roles})",
                app.app_id, app.tenant_id
            ));
        }
        let s = &self.settings;
        if s.time_scale != 1.0 {
            line(format!("Timers      {}x real time", s.time_scale));
        }
        let name_width = self
            .users
            .iter()
            .map(|u| u.display_name.chars().count())
            .max()
            .unwrap_or(0);
        if !self.users.is_empty() {
            line("Users".into());
        }
        for u in &self.users {
            let tenant = u
                .tenant_id
                .as_deref()
                .map(|t| format!(" (tenant {t})"))
                .unwrap_or_default();
            line(format!(
                "  {:name_width$}  {}{tenant}  {}; {}",
                u.display_name,
                u.id,
                u.says.describe(),
                answers(&u.answer)
            ));
        }
        if !self.phones.is_empty() {
            line("Phones".into());
        }
        for p in &self.phones {
            line(format!(
                "  {}  {}  {}; {}",
                p.number,
                p.display_name.as_deref().unwrap_or("(no name)"),
                p.says.describe(),
                answers(&p.answer)
            ));
        }
        if !self.meetings.is_empty() {
            line("Meetings".into());
        }
        for m in &self.meetings {
            let lobby = match m.lobby {
                Lobby::Nobody => "no lobby",
                Lobby::Guests => "guests wait in the lobby",
                Lobby::EveryoneElse => "everyone but its members waits in the lobby",
            };
            line(format!(
                "  {}, organized by {}; {lobby}",
                m.subject.as_deref().unwrap_or("(no subject)"),
                name(self, &m.organizer)
            ));
            line(format!(
                "    threadId {}  messageId {}",
                m.thread_id, m.message_id
            ));
            if let Some(id) = &m.join_meeting_id {
                let mut s = format!("    joinMeetingId {id}");
                if let Some(p) = &m.passcode {
                    // Writing to a String cannot fail.
                    let _ = write!(s, "  passcode {p}");
                }
                line(s);
            }
            let tenant = self
                .user(&m.organizer)
                .and_then(|u| u.tenant_id.as_deref())
                .or_else(|| self.apps.first().map(|a| a.tenant_id.as_str()))
                .unwrap_or_default();
            line(format!("    joinWebUrl {}", m.join_web_url(tenant)));
            let members: Vec<&str> = m.participants.iter().map(|p| name(self, p)).collect();
            line(format!(
                "    in it: {}",
                if members.is_empty() {
                    "nobody yet".to_owned()
                } else {
                    members.join(", ")
                }
            ));
        }
        out
    }
}

/// A user's display name, or the id itself when no user has it.
fn name<'a>(sc: &'a Scenario, id: &'a str) -> &'a str {
    sc.user(id).map_or(id, |u| u.display_name.as_str())
}

fn answers(a: &Answer) -> String {
    match a {
        Answer::AfterMs(ms) => format!("answers after {ms} ms"),
        Answer::Busy => "rejects as busy".into(),
        Answer::NoAnswer => "never answers".into(),
    }
}

#[cfg(test)]
mod tests {
    use crate::scenario::{DEFAULT_APP_ID, DEFAULT_APP_SECRET, DEFAULT_TENANT, JoinWebUrl};

    use super::*;

    #[test]
    fn the_default_scenario_is_described_with_everything_needed_to_call() {
        let s = Scenario::default();
        let text = s.describe("http://127.0.0.1:5000/");
        for needle in [
            "Graph API   http://127.0.0.1:5000/v1.0",
            "Join page   http://127.0.0.1:5000/join",
            "Dashboard   http://127.0.0.1:5000/\n",
            &format!(
                "App         {DEFAULT_APP_ID} in tenant {DEFAULT_TENANT} (all calling permissions)"
            ),
            "  John   112f7296-5fa4-42ca-bae8-6a692b15d4b8  tone 440 Hz at -12 dBFS; answers after 300 ms",
            "  Grace  550fae72-d251-43ec-868c-373732c2704f  echo; answers after 300 ms",
            "  Linus  1ac2c3c1-4f2a-46cd-a1b4-2b4a3e0a6b7c  silence;",
            "  +12345678901  Front desk  echo; answers after 300 ms",
            "  Botmedia demo meeting, organized by John; guests wait in the lobby",
            "    threadId 19:meeting_Y2FsbGluZy1ib3QtZGVtbw@thread.v2  messageId 0",
            "    joinMeetingId 314 159 265 358  passcode demo42",
            "    joinWebUrl https://teams.microsoft.com/l/meetup-join/19%3ameeting_Y2FsbGluZy1ib3QtZGVtbw%40thread.v2/0?context=",
            "    in it: John, Ada",
        ] {
            assert!(text.contains(needle), "missing {needle:?} in\n{text}");
        }
        assert!(!text.contains(DEFAULT_APP_SECRET), "{text}");
        assert!(
            text.lines()
                .filter(|l| !l.contains("joinWebUrl"))
                .all(|l| l.len() <= 130),
            "{text}"
        );
        assert!(text.lines().count() < 25, "{text}");
    }

    #[test]
    fn the_join_web_url_reads_back_into_the_meeting() {
        let s = Scenario::default();
        let m = &s.meetings[0];
        let url = m.join_web_url(DEFAULT_TENANT);
        let parsed = JoinWebUrl::parse(&url).expect("parses");
        assert_eq!(parsed.thread_id, m.thread_id);
        assert_eq!(parsed.message_id, m.message_id);
        assert_eq!(parsed.tenant_id.as_deref(), Some(DEFAULT_TENANT));
        assert_eq!(parsed.organizer_id.as_deref(), Some(m.organizer.as_str()));
    }

    #[test]
    fn join_web_urls_are_parsed_or_refused() {
        let teams = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NjA4%40thread.v2/0?context=%7b%22Tid%22%3a%22t1%22%2c%22Oid%22%3a%22o1%22%7d";
        let p = JoinWebUrl::parse(teams).unwrap();
        assert_eq!(
            (p.thread_id.as_str(), p.message_id.as_str()),
            ("19:meeting_NjA4@thread.v2", "0")
        );
        assert_eq!(
            (p.tenant_id.as_deref(), p.organizer_id.as_deref()),
            (Some("t1"), Some("o1"))
        );
        let bare = JoinWebUrl::parse("https://x/l/meetup-join/19%3aabc%40thread.skype").unwrap();
        assert_eq!((bare.message_id.as_str(), bare.tenant_id), ("0", None));
        for bad in [
            "",
            "https://teams.microsoft.com/",
            "https://teams.microsoft.com/l/meetup-join/",
            "https://teams.microsoft.com/l/meetup-join/%zz/0",
            "https://teams.microsoft.com/l/meetup-join/%0a/0",
            "https://teams.microsoft.com/l/meetup-join/19%3aabc%40thread.v2//x",
        ] {
            assert_eq!(JoinWebUrl::parse(bad), None, "{bad}");
        }
        // A context that is not JSON leaves the organizer unknown, the thread still read.
        let odd = JoinWebUrl::parse("https://t/l/meetup-join/a/0?context=%7b").unwrap();
        assert_eq!(odd.organizer_id, None);
    }
}
