DROP TABLE credit_ledger;
DROP TABLE credit_balances;
