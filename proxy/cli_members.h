/* cli_members.h: the members commands of the command line (add, rm, ls) on
 * members_file. A running server picks the change up within a second or so
 * (it re-reads the file when its mtime changes). */
#ifndef CLORO_CLI_MEMBERS_H
#define CLORO_CLI_MEMBERS_H

/* argv[0] is "members". Returns the exit status: 0 ok, 1 failure (no such
 * member, file not writable), 2 bad usage or a bad config or members file. */
int cli_members_main(int argc, char **argv);

#endif
