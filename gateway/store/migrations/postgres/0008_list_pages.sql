-- Lists are keyset-paged, newest first: the extracts a retriever may take (a requester's own, or staff's) are
-- read by (retriever, created_at) rather than scanned whole.
CREATE INDEX extracts_retriever ON extracts (retriever_kind, retriever_id, created_at);
