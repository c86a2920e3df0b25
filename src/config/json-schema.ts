import { z } from 'zod';
import { configSchema } from './schema.js';

/** The JSON schema editors use for moat.yaml and config.yaml, generated from the zod schema. */
export function configJsonSchema(): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return { ...schema, $id: 'https://moat.dev/schema/config.schema.json', title: 'moat configuration' };
}
