//! The tables, written by hand for both backends: every column type here (BigInt, Text, Bool,
//! Binary, Integer, Timestamp) maps onto both migration flavours in `migrations/`.

diesel::table! {
    users (id) {
        id -> BigInt,
        email -> Text,
        name -> Nullable<Text>,
        password_hash -> Text,
        is_active -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
        token_generation -> BigInt,
        /// The address's UTS #39 confusable skeleton; unique. Null only for accounts made
        /// before the column that share a skeleton with an older one.
        email_skeleton -> Nullable<Text>,
        limit_multiplier -> BigInt,
    }
}

diesel::table! {
    api_keys (id) {
        id -> BigInt,
        user_id -> BigInt,
        key_prefix -> Text,
        key_digest -> Binary,
        name -> Nullable<Text>,
        is_active -> Bool,
        created_at -> Timestamp,
        last_used_at -> Nullable<Timestamp>,
        expires_at -> Nullable<Timestamp>,
        /// JSON array of model names or ids.
        allowed_models -> Nullable<Text>,
        rpm -> Nullable<BigInt>,
        tpm -> Nullable<BigInt>,
        /// JSON array of `{"window_seconds", "limit_units"}`.
        budgets -> Nullable<Text>,
        is_default -> Bool,
        stream_continuation -> Bool,
    }
}

diesel::table! {
    refresh_tokens (token_id) {
        token_id -> Text,
        family_id -> Text,
        user_id -> BigInt,
        issued_at -> Timestamp,
        expires_at -> Timestamp,
        used_at -> Nullable<Timestamp>,
        revoked -> Bool,
    }
}

diesel::table! {
    wallet_keys (user_id) {
        user_id -> BigInt,
        sealed_key -> Binary,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    delegations (id) {
        id -> BigInt,
        user_id -> BigInt,
        delegate_address -> Text,
        signed_delegation_data -> Text,
        expiry -> Nullable<Timestamp>,
        is_active -> Bool,
        created_at -> Timestamp,
    }
}

diesel::table! {
    automation_settings (user_id) {
        user_id -> BigInt,
        is_enabled -> Bool,
        session_duration -> Integer,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    sessions (id) {
        id -> Text,
        api_key_id -> BigInt,
        user_id -> BigInt,
        model_id -> Text,
        bid_id -> Nullable<Text>,
        origin -> Text,
        state -> Text,
        opened_at -> Timestamp,
        ends_at -> Timestamp,
        closed_at -> Nullable<Timestamp>,
        pooled -> Bool,
        leased_by -> Nullable<Text>,
        lease_expires_at -> Nullable<Timestamp>,
    }
}

diesel::table! {
    pool_opens (id) {
        id -> BigInt,
        model_id -> Text,
        replica -> Text,
        started_at -> Timestamp,
    }
}

diesel::table! {
    usage_records (id) {
        id -> BigInt,
        user_id -> BigInt,
        api_key_id -> BigInt,
        model_id -> Nullable<Text>,
        session_id -> Nullable<Text>,
        prompt_tokens -> Nullable<Integer>,
        completion_tokens -> Nullable<Integer>,
        outcome -> Text,
        status -> Integer,
        stream -> Bool,
        latency_ms -> Integer,
        created_at -> Timestamp,
        usage_source -> Nullable<Text>,
        upstream -> Nullable<Text>,
    }
}

diesel::table! {
    api_key_revocations (seq) {
        seq -> BigInt,
        key_prefix -> Text,
        revoked_at -> Timestamp,
    }
}

diesel::joinable!(api_keys -> users (user_id));
diesel::joinable!(refresh_tokens -> users (user_id));
diesel::joinable!(wallet_keys -> users (user_id));
diesel::joinable!(delegations -> users (user_id));
diesel::joinable!(automation_settings -> users (user_id));
// No joinable! for sessions and usage_records: they have no foreign keys (see their migration).

diesel::allow_tables_to_appear_in_same_query!(
    users,
    api_keys,
    refresh_tokens,
    wallet_keys,
    delegations,
    automation_settings,
    sessions,
    usage_records,
    api_key_revocations,
    pool_opens,
);

diesel::table! {
    credit_balances (user_id) {
        user_id -> BigInt,
        posted -> BigInt,
        held -> BigInt,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    credit_ledger (id) {
        id -> Text,
        user_id -> BigInt,
        entry_type -> Text,
        status -> Text,
        amount -> BigInt,
        held_amount -> BigInt,
        idempotency_key -> Nullable<Text>,
        api_key_id -> Nullable<BigInt>,
        model -> Nullable<Text>,
        request_id -> Nullable<Text>,
        prompt_tokens -> Nullable<BigInt>,
        completion_tokens -> Nullable<BigInt>,
        input_price -> Nullable<BigInt>,
        output_price -> Nullable<BigInt>,
        estimated -> Bool,
        description -> Nullable<Text>,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

// Chat history (migration 2026-12-07-000000_chat_history).
diesel::table! {
    chats (id) {
        id -> Text,
        user_id -> BigInt,
        title -> Text,
        is_archived -> Bool,
        created_at -> Timestamp,
        updated_at -> Timestamp,
    }
}

diesel::table! {
    messages (id) {
        id -> Text,
        chat_id -> Text,
        role -> Text,
        content -> Text,
        sequence -> BigInt,
        tokens -> Nullable<Integer>,
        created_at -> Timestamp,
    }
}

diesel::joinable!(chats -> users (user_id));
diesel::joinable!(messages -> chats (chat_id));
diesel::allow_tables_to_appear_in_same_query!(chats, messages, users);
