-- Each term carries its version's key, so a search sorted by key picks its
-- page from the term rows and then reads only the page's objects, not
-- every candidate's. Terms written before this have none: searches look
-- their keys up in versions.
ALTER TABLE index_terms ADD COLUMN key TEXT;
