DROP TABLE automation_settings;
DROP TABLE delegations;
DROP TABLE wallet_keys;
DROP TABLE refresh_tokens;
DROP TABLE api_keys;
DROP TABLE users;
