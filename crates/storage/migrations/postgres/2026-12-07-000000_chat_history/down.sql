DROP TABLE messages;
DROP TABLE chats;
