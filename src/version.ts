/** moat's version, written into labels and image hashes. Kept in step with package.json by a test. */
export const MOAT_VERSION = '0.1.0';
