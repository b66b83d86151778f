/* size.c - see size.h. */
#include "util/size.h"

#include <ctype.h>
#include <errno.h>
#include <string.h>
#include <strings.h>

int size_parse(const char *s, uint64_t default_unit, uint64_t *bytes)
{
	uint64_t v = 0, unit = default_unit;
	const char *p = s;

	if (!isdigit((unsigned char)*p))
		return -EINVAL;
	for (; isdigit((unsigned char)*p); p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	if (*p) {
		switch (toupper((unsigned char)*p)) {
		case 'B': unit = 1; break;
		case 'K': unit = 1ull << 10; break;
		case 'M': unit = 1ull << 20; break;
		case 'G': unit = 1ull << 30; break;
		case 'T': unit = 1ull << 40; break;
		default: return -EINVAL;
		}
		p++;
		if (unit > 1 && (!strcasecmp(p, "B") || !strcasecmp(p, "iB")))
			p += strlen(p);
		if (*p)
			return -EINVAL;
	}
	if (unit && v > UINT64_MAX / unit)
		return -ERANGE;
	*bytes = v * unit;
	return 0;
}
