/* ini_lines.h: the line reader the config file and the members file hand
 * inih (ini_parse_stream), so that every problem of a file is reported with
 * its line number, and nothing inih would skip or misread goes unnoticed. */
#ifndef CLORO_INI_LINES_H
#define CLORO_INI_LINES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct config_errors;

struct ini_lines {
    FILE *file;
    const char *path;
    int line; /* number of the line last read */
    struct config_errors *errs;
    /* A section header "[...]" (close points at its ']'): the caller's
     * check; returns false when the section's keys are to be skipped. */
    bool (*on_section)(void *arg, const char *header, const char *close);
    void *arg;
};

/* Reads the next line into buf (size bytes); NULL at the end of the file.
 * An over-long line, a header without ']' and a line that is not
 * "key = value" are reported and read as blank; indentation is stripped
 * (inih would read an indented line as a continuation); section headers go
 * to on_section and are handed on to inih only when it returns true. */
char *ini_lines_read(struct ini_lines *in, char *buf, int size);

/* The NAME of a "[member NAME]" header (close at its ']'), truncated to size:
 * false when the header is another one. */
bool ini_lines_member_name(const char *header, const char *close, char *name, size_t size);

#endif
