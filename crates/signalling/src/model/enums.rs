//! Graph's string enums, with every documented value. Values outside the documentation parse
//! as `Unknown` and are written back verbatim.

use crate::model::core::graph_enum;

graph_enum! {
    /// `callState`: where a call is in its life.
    pub enum CallState {
        /// An incoming call not yet answered.
        Incoming => "incoming",
        /// The call is being set up.
        Establishing => "establishing",
        /// The other side is ringing (not in Graph's enum; some services and the emulator send it).
        Ringing => "ringing",
        /// Media flows.
        Established => "established",
        /// On hold.
        Hold => "hold",
        /// Being transferred.
        Transferring => "transferring",
        /// The transfer target accepted.
        TransferAccepted => "transferAccepted",
        /// Being redirected.
        Redirecting => "redirecting",
        /// Being torn down.
        Terminating => "terminating",
        /// Ended.
        Terminated => "terminated",
        /// Graph's evolvable-enum sentinel.
        UnknownFutureValue => "unknownFutureValue",
    }
}

graph_enum! {
    /// `callDirection`.
    pub enum CallDirection {
        /// The call came to the bot.
        Incoming => "incoming",
        /// The bot placed the call.
        Outgoing => "outgoing",
    }
}

graph_enum! {
    /// `modality`: a kind of media.
    pub enum Modality {
        /// Unknown modality.
        UnknownModality => "unknown",
        /// Audio.
        Audio => "audio",
        /// Video.
        Video => "video",
        /// Video-based screen sharing.
        VideoBasedScreenSharing => "videoBasedScreenSharing",
        /// Data.
        Data => "data",
        /// Graph's evolvable-enum sentinel.
        UnknownFutureValue => "unknownFutureValue",
    }
}

graph_enum! {
    /// `mediaDirection` of a stream.
    pub enum MediaDirection {
        /// No media either way.
        Inactive => "inactive",
        /// Send only.
        SendOnly => "sendOnly",
        /// Receive only.
        ReceiveOnly => "receiveOnly",
        /// Both ways.
        SendReceive => "sendReceive",
    }
}

graph_enum! {
    /// `endpointType` of a participant.
    pub enum EndpointType {
        /// A default endpoint.
        Default => "default",
        /// Voicemail.
        Voicemail => "voicemail",
        /// Skype for Business.
        SkypeForBusiness => "skypeForBusiness",
        /// A Skype for Business VoIP phone.
        SkypeForBusinessVoipPhone => "skypeForBusinessVoipPhone",
        /// Graph's evolvable-enum sentinel.
        UnknownFutureValue => "unknownFutureValue",
    }
}

graph_enum! {
    /// `routingPolicy` of a call.
    pub enum RoutingPolicy {
        /// No policy.
        None => "none",
        /// No missed-call notification.
        NoMissedCall => "noMissedCall",
        /// Forwarding disabled except to phones.
        DisableForwardingExceptPhone => "disableForwardingExceptPhone",
        /// Forwarding disabled.
        DisableForwarding => "disableForwarding",
        /// Prefer Skype for Business.
        PreferSkypeForBusiness => "preferSkypeForBusiness",
        /// Graph's evolvable-enum sentinel.
        UnknownFutureValue => "unknownFutureValue",
    }
}

graph_enum! {
    /// `routingType` of a call route.
    pub enum RoutingType {
        /// The call was forwarded.
        Forwarded => "forwarded",
        /// The target was looked up.
        Lookup => "lookup",
        /// The call forked to the caller's own endpoints.
        SelfFork => "selfFork",
        /// Graph's evolvable-enum sentinel.
        UnknownFutureValue => "unknownFutureValue",
    }
}

graph_enum! {
    /// `tone`: a DTMF tone.
    pub enum Tone {
        /// 0
        Tone0 => "tone0",
        /// 1
        Tone1 => "tone1",
        /// 2
        Tone2 => "tone2",
        /// 3
        Tone3 => "tone3",
        /// 4
        Tone4 => "tone4",
        /// 5
        Tone5 => "tone5",
        /// 6
        Tone6 => "tone6",
        /// 7
        Tone7 => "tone7",
        /// 8
        Tone8 => "tone8",
        /// 9
        Tone9 => "tone9",
        /// *
        Star => "star",
        /// #
        Pound => "pound",
        /// A
        A => "a",
        /// B
        B => "b",
        /// C
        C => "c",
        /// D
        D => "d",
        /// Flash.
        Flash => "flash",
    }
}

graph_enum! {
    /// `changeType` of a notification.
    pub enum ChangeType {
        /// The resource was created.
        Created => "created",
        /// The resource was updated.
        Updated => "updated",
        /// The resource was deleted.
        Deleted => "deleted",
    }
}

graph_enum! {
    /// `operationStatus` of a `commsOperation`.
    pub enum OperationStatus {
        /// Not started yet.
        NotStarted => "notStarted",
        /// Running.
        Running => "running",
        /// Completed.
        Completed => "completed",
        /// Failed.
        Failed => "failed",
        /// Graph's evolvable-enum sentinel.
        UnknownFutureValue => "unknownFutureValue",
    }
}

graph_enum! {
    /// `playPromptCompletionReason`.
    pub enum PlayPromptCompletionReason {
        /// Unknown.
        UnknownReason => "unknown",
        /// Every prompt played.
        CompletedSuccessfully => "completedSuccessfully",
        /// Cancelled.
        MediaOperationCanceled => "mediaOperationCanceled",
        /// Graph's evolvable-enum sentinel.
        UnknownFutureValue => "unknownFutureValue",
    }
}

graph_enum! {
    /// `recordCompletionReason`.
    pub enum RecordCompletionReason {
        /// Cancelled.
        OperationCanceled => "operationCanceled",
        /// The stop tone was detected.
        StopToneDetected => "stopToneDetected",
        /// The maximum duration was reached.
        MaxRecordDurationReached => "maxRecordDurationReached",
        /// Silence at the start lasted too long.
        InitialSilenceTimeout => "initialSilenceTimeout",
        /// Silence lasted too long.
        MaxSilenceTimeout => "maxSilenceTimeout",
        /// The prompt failed to play.
        PlayPromptFailed => "playPromptFailed",
        /// The beep failed to play.
        PlayBeepFailed => "playBeepFailed",
        /// No media was received.
        MediaReceiveTimeout => "mediaReceiveTimeout",
        /// Something else went wrong.
        UnspecifiedError => "unspecifiedError",
    }
}

graph_enum! {
    /// `sendDtmfCompletionReason`.
    pub enum SendDtmfCompletionReason {
        /// Unknown.
        UnknownReason => "unknown",
        /// Every tone was sent.
        CompletedSuccessfully => "completedSuccessfully",
        /// Cancelled.
        MediaOperationCanceled => "mediaOperationCanceled",
        /// Graph's evolvable-enum sentinel.
        UnknownFutureValue => "unknownFutureValue",
    }
}

graph_enum! {
    /// `recordingStatus` of a participant.
    pub enum RecordingStatus {
        /// Unknown.
        UnknownStatus => "unknown",
        /// Not recording.
        NotRecording => "notRecording",
        /// Recording.
        Recording => "recording",
        /// Recording failed.
        Failed => "failed",
        /// Graph's evolvable-enum sentinel.
        UnknownFutureValue => "unknownFutureValue",
    }
}

graph_enum! {
    /// `mediaState` of a call's audio.
    pub enum MediaState {
        /// Media flows.
        Active => "active",
        /// No media.
        Inactive => "inactive",
        /// Graph's evolvable-enum sentinel.
        UnknownFutureValue => "unknownFutureValue",
    }
}

graph_enum! {
    /// `callTranscriptionState`.
    pub enum CallTranscriptionState {
        /// Not started.
        NotStarted => "notStarted",
        /// Transcribing.
        Active => "active",
        /// Stopped.
        Inactive => "inactive",
        /// Graph's evolvable-enum sentinel.
        UnknownFutureValue => "unknownFutureValue",
    }
}

graph_enum! {
    /// `autoAdmittedUsersType` of a meeting.
    pub enum AutoAdmittedUsersType {
        /// Everyone in the organizer's company.
        EveryoneInCompany => "everyoneInCompany",
        /// Everyone.
        Everyone => "everyone",
    }
}

graph_enum! {
    /// `onlineMeetingContentSharingDisabledReason`.
    pub enum OnlineMeetingContentSharingDisabledReason {
        /// Watermark protection is on.
        WatermarkProtection => "watermarkProtection",
        /// Graph's evolvable-enum sentinel.
        UnknownFutureValue => "unknownFutureValue",
    }
}

graph_enum! {
    /// `onlineMeetingVideoDisabledReason`.
    pub enum OnlineMeetingVideoDisabledReason {
        /// Watermark protection is on.
        WatermarkProtection => "watermarkProtection",
        /// Graph's evolvable-enum sentinel.
        UnknownFutureValue => "unknownFutureValue",
    }
}
