//! Builders of create-call requests for the scenarios of the spec.

use crate::model::{
    Call, ChatInfo, Identity, IdentityRole, IdentitySet, InvitationParticipantInfo,
    JoinMeetingIdMeetingInfo, MediaConfig, MeetingInfo, Modality, OrganizerMeetingInfo,
    ParticipantInfo, TokenMeetingInfo,
};

/// A create-call request being built; [`CallRequest::build`] makes the `call` resource.
#[derive(Debug, Clone)]
pub struct CallRequest {
    source: Option<IdentitySet>,
    targets: Vec<IdentitySet>,
    chat_info: Option<ChatInfo>,
    meeting_info: Option<MeetingInfo>,
    tenant_id: Option<String>,
    subject: Option<String>,
    media: Media,
}

#[derive(Debug, Clone)]
enum Media {
    Service,
    App(String),
}

impl CallRequest {
    fn empty() -> Self {
        CallRequest {
            source: None,
            targets: Vec::new(),
            chat_info: None,
            meeting_info: None,
            tenant_id: None,
            subject: None,
            media: Media::Service,
        }
    }

    /// A peer-to-peer call to a directory user.
    pub fn peer_to_peer(user_id: &str, display_name: Option<&str>) -> Self {
        let mut r = Self::empty();
        r.targets.push(IdentitySet::with(
            IdentityRole::User,
            Identity::new(user_id, display_name),
        ));
        r
    }

    /// A group call to directory users (`(id, display name)` each; 2 to 5 of them).
    pub fn group<'a>(users: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Self {
        let mut r = Self::empty();
        r.targets = users
            .into_iter()
            .map(|(id, name)| IdentitySet::with(IdentityRole::User, Identity::new(id, name)))
            .collect();
        r
    }

    /// Joins a scheduled meeting by its chat thread and organizer.
    pub fn join_meeting(
        thread_id: &str,
        message_id: &str,
        organizer_id: &str,
        organizer_tenant: &str,
    ) -> Self {
        let mut organizer = Identity::new(organizer_id, None);
        organizer.tenant_id = organizer_tenant.to_owned().into();
        let info = OrganizerMeetingInfo {
            odata_type: "#microsoft.graph.organizerMeetingInfo".to_owned().into(),
            organizer: Box::new(IdentitySet::with(IdentityRole::User, organizer)).into(),
            allow_conversation_without_host: true.into(),
            ..OrganizerMeetingInfo::default()
        };
        Self::join_meeting_with(
            chat_info(thread_id, message_id),
            MeetingInfo::Organizer(info),
        )
        .tenant(organizer_tenant)
    }

    /// Joins a meeting by its Teams join URL
    /// (`https://teams.microsoft.com/l/meetup-join/{thread}/{message}?context={"Tid":..,"Oid":..}`,
    /// any host): the thread and message become `chatInfo`, the context's organizer (`Oid`)
    /// and tenant (`Tid`) an `organizerMeetingInfo`, as Graph's SDKs read such a link.
    /// `None` when the URL is not one, or its context names no organizer or tenant.
    pub fn join_meeting_url(url: &str) -> Option<Self> {
        let url = super::JoinWebUrl::parse(url)?;
        Some(Self::join_meeting(
            &url.thread_id,
            &url.message_id,
            url.organizer_id.as_deref()?,
            url.tenant_id.as_deref()?,
        ))
    }

    /// Joins a meeting by its join id and passcode (`joinMeetingIdMeetingInfo`, what a
    /// meeting invitation shows as "Meeting ID" and "Passcode"); no `chatInfo` is needed.
    pub fn join_meeting_id(join_meeting_id: &str, passcode: Option<&str>) -> Self {
        let mut info = JoinMeetingIdMeetingInfo {
            odata_type: "#microsoft.graph.joinMeetingIdMeetingInfo"
                .to_owned()
                .into(),
            join_meeting_id: join_meeting_id.to_owned().into(),
            ..JoinMeetingIdMeetingInfo::default()
        };
        if let Some(passcode) = passcode {
            info.passcode = crate::model::Secret(passcode.to_owned()).into();
        }
        let mut r = Self::empty();
        r.meeting_info = Some(MeetingInfo::JoinMeetingId(info));
        r
    }

    /// Joins a meeting with a join token (`tokenMeetingInfo`).
    pub fn join_meeting_with_token(thread_id: &str, message_id: &str, token: &str) -> Self {
        let info = TokenMeetingInfo {
            odata_type: "#microsoft.graph.tokenMeetingInfo".to_owned().into(),
            token: crate::model::Secret(token.to_owned()).into(),
            ..TokenMeetingInfo::default()
        };
        Self::join_meeting_with(chat_info(thread_id, message_id), MeetingInfo::Token(info))
    }

    /// Joins a meeting given its `chatInfo` and `meetingInfo` as they are.
    pub fn join_meeting_with(chat_info: ChatInfo, meeting_info: MeetingInfo) -> Self {
        let mut r = Self::empty();
        r.chat_info = Some(chat_info);
        r.meeting_info = Some(meeting_info);
        r
    }

    /// Makes a meeting join a guest join: the bot appears as `display_name`, with the guest id
    /// `guest_id` (any id unique to this guest).
    pub fn as_guest(mut self, guest_id: &str, display_name: &str) -> Self {
        self.source = Some(IdentitySet::with(
            IdentityRole::Guest,
            Identity::new(guest_id, Some(display_name)),
        ));
        self
    }

    /// A PSTN call to `phone_number` (E.164) from the application instance
    /// `application_instance_id` (the bot's phone-enabled resource account).
    pub fn pstn(phone_number: &str, application_instance_id: &str, tenant_id: &str) -> Self {
        let mut r = Self::empty();
        r.source = Some(IdentitySet::with(
            IdentityRole::ApplicationInstance,
            Identity::new(application_instance_id, None),
        ));
        r.targets.push(IdentitySet::with(
            IdentityRole::Phone,
            Identity::new(phone_number, None),
        ));
        r.tenant_id = Some(tenant_id.to_owned());
        r
    }

    /// Sets the tenant of the call.
    pub fn tenant(mut self, tenant_id: &str) -> Self {
        self.tenant_id = Some(tenant_id.to_owned());
        self
    }

    /// Sets the subject (group calls).
    pub fn subject(mut self, subject: &str) -> Self {
        self.subject = Some(subject.to_owned());
        self
    }

    /// Service-hosted media (the default).
    pub fn service_hosted(mut self) -> Self {
        self.media = Media::Service;
        self
    }

    /// App-hosted media: the call's `mediaConfig` carries `session`'s blob.
    pub fn app_hosted(mut self, session: &media_session::MediaSession) -> Self {
        self.media = Media::App(session.blob().to_json());
        self
    }

    /// True when the media is app-hosted.
    pub fn is_app_hosted(&self) -> bool {
        matches!(self.media, Media::App(_))
    }

    /// The `call` resource to POST, notifications going to `callback_uri`.
    pub fn build(&self, callback_uri: &str) -> Call {
        let mut call = Call {
            odata_type: "#microsoft.graph.call".to_owned().into(),
            callback_uri: callback_uri.to_owned().into(),
            requested_modalities: vec![Modality::Audio].into(),
            media_config: match &self.media {
                Media::Service => MediaConfig::service_hosted(),
                Media::App(blob) => MediaConfig::app_hosted(blob.clone()),
            }
            .into(),
            ..Call::default()
        };
        if let Some(source) = &self.source {
            call.source = ParticipantInfo {
                odata_type: "#microsoft.graph.participantInfo".to_owned().into(),
                identity: source.clone().into(),
                ..ParticipantInfo::default()
            }
            .into();
        }
        if !self.targets.is_empty() {
            call.targets = self
                .targets
                .iter()
                .map(|t| InvitationParticipantInfo {
                    odata_type: "#microsoft.graph.invitationParticipantInfo"
                        .to_owned()
                        .into(),
                    identity: t.clone().into(),
                    ..InvitationParticipantInfo::default()
                })
                .collect::<Vec<_>>()
                .into();
        }
        call.chat_info = self.chat_info.clone().into();
        call.meeting_info = self.meeting_info.clone().into();
        call.tenant_id = self.tenant_id.clone().into();
        call.subject = self.subject.clone().into();
        call
    }
}

/// An invitation of `identity` (for invite, redirect and transfer).
pub fn invitation(identity: IdentitySet) -> InvitationParticipantInfo {
    InvitationParticipantInfo {
        odata_type: "#microsoft.graph.invitationParticipantInfo"
            .to_owned()
            .into(),
        identity: identity.into(),
        ..InvitationParticipantInfo::default()
    }
}

/// An invitation of the directory user `user_id`.
pub fn invite_user(user_id: &str, display_name: Option<&str>) -> InvitationParticipantInfo {
    invitation(IdentitySet::with(
        IdentityRole::User,
        Identity::new(user_id, display_name),
    ))
}

/// An invitation of the phone number `number` (E.164).
pub fn invite_phone(number: &str) -> InvitationParticipantInfo {
    invitation(IdentitySet::with(
        IdentityRole::Phone,
        Identity::new(number, None),
    ))
}

fn chat_info(thread_id: &str, message_id: &str) -> ChatInfo {
    ChatInfo {
        odata_type: "#microsoft.graph.chatInfo".to_owned().into(),
        thread_id: thread_id.to_owned().into(),
        message_id: message_id.to_owned().into(),
        ..ChatInfo::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Scenario, check_call};

    const CB: &str = "https://bot.contoso.com/callback";

    #[test]
    fn every_builder_validates_as_its_scenario() {
        let p2p = CallRequest::peer_to_peer("112f7296-5fa4-42ca-bae8-6a692b15d4b8", Some("John"));
        assert_eq!(
            check_call(&p2p.build(CB)).unwrap().scenario,
            Scenario::PeerToPeer
        );

        let group = CallRequest::group([("a", None), ("b", Some("B"))]).subject("standup");
        assert_eq!(
            check_call(&group.build(CB)).unwrap().scenario,
            Scenario::GroupCall { targets: 2 }
        );

        let meeting = CallRequest::join_meeting(
            "19:meeting_abc@thread.v2",
            "0",
            "5810cede-f3cc-42eb-b2c1-e9bd5d53ec96",
            "aa67bd4c-8475-432d-bd41-39f255720e0a",
        );
        let v = check_call(&meeting.build(CB)).unwrap();
        assert!(matches!(
            v.scenario,
            Scenario::MeetingJoin {
                as_guest: false,
                ..
            }
        ));

        let guest = meeting.clone().as_guest("d7a3b999", "Guest User");
        let v = check_call(&guest.build(CB)).unwrap();
        assert!(matches!(
            v.scenario,
            Scenario::MeetingJoin { as_guest: true, .. }
        ));

        let by_id = CallRequest::join_meeting_id("314 159 265 358", Some("demo42")).build(CB);
        assert!(matches!(
            check_call(&by_id).unwrap().scenario,
            Scenario::MeetingJoin {
                meeting: crate::MeetingKind::JoinMeetingId,
                as_guest: false,
            }
        ));
        assert!(by_id.chat_info.get().is_none());
        let token = CallRequest::join_meeting_with_token("19:meeting_abc@thread.v2", "0", "t0k");
        assert!(matches!(
            check_call(&token.build(CB)).unwrap().scenario,
            Scenario::MeetingJoin {
                meeting: crate::MeetingKind::Token,
                ..
            }
        ));

        let pstn = CallRequest::pstn("+12345678901", "3d913abb", "aa67bd4c");
        assert_eq!(
            check_call(&pstn.build(CB)).unwrap().scenario,
            Scenario::Pstn
        );
    }

    #[test]
    fn a_teams_join_url_becomes_chat_info_and_organizer_meeting_info() {
        let url = "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NjA4%40thread.v2/0?context=%7b%22Tid%22%3a%22t1%22%2c%22Oid%22%3a%22o1%22%7d";
        let call = CallRequest::join_meeting_url(url)
            .expect("a join URL")
            .build(CB);
        let expected = CallRequest::join_meeting("19:meeting_NjA4@thread.v2", "0", "o1", "t1");
        assert_eq!(call, expected.build(CB));
        assert!(matches!(
            check_call(&call).unwrap().scenario,
            Scenario::MeetingJoin {
                as_guest: false,
                ..
            }
        ));
        for bad in [
            "",
            "https://teams.microsoft.com/",
            "https://teams.microsoft.com/l/meetup-join/%zz/0?context=%7b%7d",
            "https://teams.microsoft.com/l/meetup-join/%0a/0?context=%7b%22Tid%22%3a%22t%22%2c%22Oid%22%3a%22o%22%7d",
            // No context, a context that is not JSON, or one without the organizer.
            "https://teams.microsoft.com/l/meetup-join/19%3aabc%40thread.v2/0",
            "https://teams.microsoft.com/l/meetup-join/19%3aabc%40thread.v2/0?context=%7b",
            "https://teams.microsoft.com/l/meetup-join/19%3aabc%40thread.v2/0?context=%7b%22Tid%22%3a%22t1%22%7d",
        ] {
            assert!(CallRequest::join_meeting_url(bad).is_none(), "{bad}");
        }
    }
}
