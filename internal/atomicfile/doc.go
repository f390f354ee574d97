// Package atomicfile replaces a file that holds secrets (a client's session
// file with its master secret, the file store's log) without ever writing
// them anywhere else.
//
// The obvious way, os.WriteFile(path+".tmp") and a rename, writes through
// whatever is at path+".tmp": a file someone created there beforehand keeps
// its mode (world-readable, say) and its owner, and a symbolic link sends
// the secret, or a truncation, wherever it points. [Create] instead makes a
// fresh file with a random name in the target's directory (O_EXCL, mode
// 0600: never an existing file, never through a link), and [File.Commit]
// renames it over the target, which replaces the target itself (a link at
// the target is replaced, not followed). A file that fails on the way is
// removed ([File.Abort]); a crash between Create and Commit leaves a
// ".NAME.tmp-*" file behind, which [RemoveStale] clears for a caller that
// knows no one else is writing NAME.
//
// The directory itself must be trusted: whoever may write it can replace
// the target (or its temporary files) after the fact, whatever the writer
// does.
package atomicfile
