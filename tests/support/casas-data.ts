/**
 * The folder of the WSU CASAS Kyoto recordings that the end-to-end tests and
 * one unit test read. The recordings' licence does not allow shipping them,
 * so they live beside the repository, in `../shared/data/casas-kyoto`, unless
 * CASAS_DATA_DIR names another copy.
 */
import { resolve } from 'node:path';

export function casasDataDir(): string {
  return process.env.CASAS_DATA_DIR ?? resolve(import.meta.dirname, '../../../shared/data/casas-kyoto');
}
