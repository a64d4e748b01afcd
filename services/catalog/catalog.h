/* catalog.h -- the catalog service: the seeded lookups now; establishments, lots, slots,
 * API keys and cameras next (api.md, "Catalog"). One file per group of routes, each ending
 * with its _register(). */
#ifndef SP_CATALOG_H
#define SP_CATALOG_H

#include "spsvc.h"

void lookups_register(spsvc *kit);

#endif
