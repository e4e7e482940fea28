DROP TABLE api_key_revocations;
