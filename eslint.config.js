// Lint: the recommended JavaScript and TypeScript rules, plus a line cap for what prettier cannot
// wrap (long strings and comments). Formatting itself is prettier's (npm run format).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';
import globals from 'globals';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'test-results/**', 'native/**', 'schema/**', 'templates/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { ...globals.node } },
    rules: {
      'max-len': ['error', { code: 160, ignoreUrls: true, ignoreRegExpLiterals: true, ignoreStrings: true, ignoreTemplateLiterals: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
    },
  },
  // The launcher and its helpers are CommonJS on purpose: they load before any ES module (see bin/moat.js).
  { files: ['bin/**/*.js', '**/*.cjs'], rules: { '@typescript-eslint/no-require-imports': 'off' } },
  // Tests plant and look for control characters on purpose, and read untyped JSON from processes.
  { files: ['test/**/*.ts'], rules: { 'no-control-regex': 'off', '@typescript-eslint/no-explicit-any': 'off' } },
);
