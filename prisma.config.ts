// Prisma CLI configuration. Only `prisma generate` runs in this project's
// scripts; the app applies migrations itself (src/storage/postgres/migrator.ts),
// and users who have Prisma's schema engine can run `prisma migrate deploy`.
import { defineConfig } from 'prisma/config';

export default defineConfig({
  schema: 'prisma/schema.prisma',
  migrations: { path: 'prisma/migrations' },
  datasource: { url: process.env.DATABASE_URL ?? 'postgresql://localhost:5432/event_master' },
});
