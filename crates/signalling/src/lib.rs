//! Graph calling model, request validation, client, token provider and notification webhook.
