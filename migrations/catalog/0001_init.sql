-- 0001_init.sql -- the catalog schema: the seeded lookups (store, slot and vehicle types,
-- domain.md), referred to by code. Establishments, lots, slots, API keys and cameras
-- follow in the next migrations.
CREATE SCHEMA IF NOT EXISTS catalog;

-- code: what bodies carry (lower case, stable); name: what a screen shows; id orders the
-- list in the order of the seed (and pages it)
CREATE TABLE catalog.store_types (
    id          smallserial PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (code ~ '^[a-z][a-z0-9_]{0,31}$'),
    name        text NOT NULL
);
CREATE TABLE catalog.slot_types (
    id          smallserial PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (code ~ '^[a-z][a-z0-9_]{0,31}$'),
    name        text NOT NULL
);
CREATE TABLE catalog.vehicle_types (
    id          smallserial PRIMARY KEY,
    code        text NOT NULL UNIQUE CHECK (code ~ '^[a-z][a-z0-9_]{0,31}$'),
    name        text NOT NULL
);

INSERT INTO catalog.store_types (code, name) VALUES
    ('shopping', 'Shopping mall'),
    ('supermarket', 'Supermarket'),
    ('hospital', 'Hospital'),
    ('airport', 'Airport'),
    ('university', 'University'),
    ('office', 'Office building'),
    ('stadium', 'Stadium'),
    ('public', 'Public parking'),
    ('other', 'Other');

INSERT INTO catalog.slot_types (code, name) VALUES
    ('regular', 'Regular'),
    ('moto', 'Motorcycle'),
    ('accessible', 'Accessible'),
    ('elderly', 'Elderly'),
    ('ev', 'Electric vehicle charging'),
    ('family', 'Family'),
    ('truck', 'Truck / loading');

INSERT INTO catalog.vehicle_types (code, name) VALUES
    ('none', 'No vehicle'),
    ('car', 'Car'),
    ('moto', 'Motorcycle'),
    ('truck', 'Truck');
