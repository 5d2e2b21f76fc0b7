/* ini_lines.c: the inih line reader shared by config.c and member.c
 * (ini_lines.h). */
#include "ini_lines.h"
#include "config.h"

#include <string.h>

/* Hands inih a blank line in place of one already reported. */
static char *blank(char *buf)
{
    buf[0] = '\n';
    buf[1] = '\0';
    return buf;
}

char *ini_lines_read(struct ini_lines *in, char *buf, int size)
{
    if (fgets(buf, size, in->file) == NULL)
        return NULL;
    in->line++;
    size_t len = strlen(buf);
    if (len > 0 && buf[len - 1] != '\n' && !feof(in->file)) {
        config_errors_add(in->errs, "%s:%d: line too long (at most %d bytes)", in->path, in->line,
                          size - 2);
        int c;
        while ((c = fgetc(in->file)) != EOF && c != '\n')
            ;
        return blank(buf);
    }
    size_t indent = strspn(buf, " \t");
    memmove(buf, buf + indent, len - indent + 1);
    char first = buf[0];
    if (first == '\0' || first == '\n' || first == '\r' || first == ';' || first == '#')
        return buf;
    if (first == '[') {
        const char *close = strchr(buf, ']');
        if (close == NULL) {
            config_errors_add(in->errs, "%s:%d: section header without ']'", in->path, in->line);
            in->on_section(in->arg, buf, NULL);
            return blank(buf);
        }
        return in->on_section(in->arg, buf, close) ? buf : blank(buf);
    }
    if (strpbrk(buf, "=:") == NULL) {
        config_errors_add(in->errs, "%s:%d: not a 'key = value' line", in->path, in->line);
        return blank(buf);
    }
    return buf;
}

bool ini_lines_member_name(const char *header, const char *close, char *name, size_t size)
{
    int name_len = (int)(close - header - 1);
    if (name_len <= 7 || strncmp(header + 1, "member ", 7) != 0)
        return false;
    snprintf(name, size, "%.*s", name_len - 7, header + 8);
    return true;
}
