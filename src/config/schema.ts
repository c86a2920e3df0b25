import { z } from 'zod';
import { parseSize } from '../domain/size.js';
import { parseDuration } from '../domain/limits.js';
import { TOOLCHAINS } from '../domain/toolchain.js';

/**
 * The config schema is the single source of truth: TypeScript types, validation and the JSON
 * schema for editors (schema/config.schema.json, checked for drift by a test) all come from it.
 */

const size = z
  .union([z.string(), z.number().int().positive()])
  .refine((value) => parseSize(value) !== undefined, { message: 'expected a size such as 512m, 2g or a number of bytes' })
  .describe('A size: bytes, or a number with k, m, g (powers of 1024), e.g. "2g".');

export const limitsSchema = z
  .strictObject({
    memory: size.describe('Memory limit; swap is held to the same figure. Default 2g.').optional(),
    cpus: z.number().positive().max(1024).describe('CPU cores the task may use (fractions allowed). Default 2.').optional(),
    pids: z.number().int().min(16).max(1_000_000).describe('Most processes and threads at once. Default 512.').optional(),
    nofile: z.number().int().min(64).max(1_048_576).describe('Open files per process. Default 4096.').optional(),
    tmp: size.describe('Size of /tmp (tmpfs, counts against memory). Default 512m.').optional(),
    home: size.describe('Size of the home directory (tmpfs, counts against memory). Default 512m.').optional(),
    disk: size
      .describe('Cap on what a task writes to its workspace (a loop-mounted filesystem of that size, where moat runs as root). Default 10g.')
      .optional(),
    idle: z
      .union([z.string(), z.number().int().min(0)])
      .refine((value) => parseDuration(value) !== undefined, { message: 'expected a duration such as 10m or 1h (0: no limit)' })
      .describe('Stop a task after this long with nothing running in it (commits stay). Default: no limit.')
      .optional(),
    timeout: z
      .union([z.string(), z.number().int().min(0)])
      .refine((value) => parseDuration(value) !== undefined, { message: 'expected a duration such as 90s, 30m, 2h or 1d (0: no limit)' })
      .describe("Wall-clock life of a task's container; at the limit the container is stopped (its commits stay). Default: no limit.")
      .optional(),
  })
  .describe('Resource limits of each task.');

const envName = z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'expected an environment variable name');

const gitIdentity = z
  .strictObject({
    name: z.string().min(1).max(200).describe('user.name for commits made in the sandbox.').optional(),
    email: z.string().min(1).max(200).describe('user.email for commits made in the sandbox.').optional(),
  })
  .describe('Identity for commits made inside the sandbox. Default: your own user.name and user.email.');

/** Method and path rules of one allowed host (domain/request-rules.ts). */
const requestRuleSchema = z
  .strictObject({
    methods: z
      .array(z.string().regex(/^[A-Za-z]{1,16}$/, 'expected an HTTP method such as GET'))
      .min(1)
      .describe('Only these methods, e.g. [GET, HEAD].')
      .optional(),
    paths: z
      .array(z.string().regex(/^\/[\x21-\x7e]{0,499}$/, 'expected an absolute path such as /repos/acme/'))
      .min(1)
      .describe(
        'Only paths under these prefixes, compared by whole segments, case-sensitively, on a strict canonical form (dot segments, //, ";" and encoded slashes are refused).',
      )
      .optional(),
    maxBody: size.describe('Largest request body, e.g. 1m (chunked bodies are counted as they stream and cut at the cap).').optional(),
  })
  .describe(
    "What requests to this host may be: moat then inspects its HTTPS with the task's own CA (only for hosts with rules; every other host stays end-to-end encrypted).",
  );

// A template name, maybe with toolchains added (codex+python).
const templateName = z
  .string()
  .regex(new RegExp(`^[a-z0-9][a-z0-9-]{0,39}(?:\\+(?:${TOOLCHAINS.join('|')}))*$`), 'expected a template name such as shell or codex+python');

export const configSchema = z
  .strictObject({
    $schema: z.string().describe("Path or URL of this file's JSON schema, for editors.").optional(),
    template: templateName
      .describe(
        'Template a new task uses when -t gives none; yours wins over the repository\'s. With neither, toolchains are picked from the repository\'s files (package.json, pyproject.toml, requirements.txt, go.mod, Cargo.toml), else "shell". Toolchains can be added: codex+python.',
      )
      .optional(),
    baseImage: z
      .string()
      .regex(/^[a-z0-9][a-z0-9._/:@-]{0,254}$/, 'expected an image reference such as moat-base:bookworm')
      .describe('Image the templates build on. Default moat-base:bookworm, built offline by scripts/build-base-image.sh.')
      .optional(),
    limits: limitsSchema.optional(),
    network: z
      .enum(['none', 'allowlist', 'open'])
      .describe(
        'Outbound network of each task. "none" (default): no network at all. "allowlist": only egress.allow, through moat\'s gateway. "open": any public address, through the gateway, logged.',
      )
      .optional(),
    egress: z
      .strictObject({
        allow: z
          .array(z.union([z.string().min(1).max(300), z.record(z.string().min(1).max(300), requestRuleSchema)]))
          .describe(
            'Hosts a task may reach: "example.com", "*.example.com" (subdomains only), "host:443", an IP or a CIDR block ("10.1.2.0/24", needed for internal addresses). A host name may carry method and path rules: `- registry.npmjs.org: { methods: [GET, HEAD] }`. In a repository\'s moat.yaml such rules only narrow hosts you allowed (they need no approval); plain entries there are requests for `moat approve`.',
          )
          .optional(),
        deny: z.array(z.string().min(1).max(300)).describe('Hosts never reachable; deny wins over allow.').optional(),
        allowAddresses: z
          .array(z.string().min(1).max(60))
          .describe(
            'Address ranges (CIDR) that allowed names may resolve into although they are not public, e.g. ["203.0.113.0/24"] where your network answers with its TLS-inspecting proxy. Never makes an address itself reachable; loopback and cloud metadata stay refused. User config only; `moat doctor` suggests it.',
          )
          .optional(),
        trustCa: z
          .array(z.string().min(1))
          .describe(
            'PEM files of extra CAs (~ allowed) that the gateway trusts for its own TLS and that every sandbox with a network trusts too (system bundle plus these, through SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE, GIT_SSL_CAINFO, CARGO_HTTP_CAINFO). User config only.',
          )
          .optional(),
        trustHostCa: z
          .boolean()
          .describe(
            'Like trustCa, with the CAs this host added to its own trust (the .crt files under /usr/local/share/ca-certificates): for a network whose TLS-inspecting proxy signs with one. User config only; `moat doctor` suggests it.',
          )
          .optional(),
        upstreamProxy: z
          .string()
          .min(1)
          .max(2000)
          .describe(
            'An http:// proxy the gateway sends allowed connections through (http://[user:pass@]host:port); the credentials stay in the gateway. Default: HTTPS_PROXY / HTTP_PROXY of the environment moat runs in. The proxy then resolves names, not the gateway. User config only.',
          )
          .optional(),
        ask: z
          .boolean()
          .describe(
            'Hold a connection to a host that is neither allowed nor denied and ask a human (moat ui, `moat egress --pending`, `moat allow TASK HOST --once`) instead of refusing it at once; no answer in time is a denial. User config only.',
          )
          .optional(),
        askSeconds: z
          .number()
          .int()
          .min(1)
          .max(3600)
          .describe('How long a held connection waits for an answer when egress.ask is on (default 60). User config only.')
          .optional(),
        noProxy: z
          .array(z.string().min(1).max(300))
          .describe(
            'Hosts the gateway reaches directly, not through upstreamProxy (as NO_PROXY: names match their subdomains too, IPs, CIDR blocks). Default: NO_PROXY of the environment. User config only.',
          )
          .optional(),
      })
      .describe(
        "Egress rules for network: allowlist (and deny rules for open). A repository may add deny rules only (and request hosts for `moat approve`); the network settings below allow and deny are the user's alone.",
      )
      .optional(),
    isolation: z
      .enum(['runc', 'gvisor'])
      .describe(
        'What stands between a task and the host kernel. "runc" (default): namespaces, cgroups, seccomp. "gvisor": also gVisor\'s user-space kernel (runsc; scripts/setup-gvisor.sh installs it). A repository may ask for gvisor, never turn it off. MOAT_ISOLATION and --isolation override yours.',
      )
      .optional(),
    env: z
      .record(envName, z.string().max(65536))
      .describe('Variables set in every sandbox, by value. User config only: a repository cannot grant environment.')
      .optional(),
    envPassthrough: z.array(envName).describe('Host environment variables copied into every sandbox by name. User config only.').optional(),
    git: gitIdentity.optional(),
    sandboxUid: z
      .number()
      .int()
      .min(1)
      .max(2_147_483_646)
      .describe('uid:gid the sandbox runs as when moat itself runs as root (never 0). Default 1000.')
      .optional(),
    mounts: z
      .array(
        z.strictObject({
          source: z.string().min(1).describe('A folder on the host (~ allowed), e.g. ~/.cache/pip.'),
          target: z
            .string()
            .regex(/^\/(home\/agent|opt|mnt|cache)\/[A-Za-z0-9._/-]+$/, 'expected a path under /home/agent, /opt, /mnt or /cache')
            .describe('Where the sandbox sees it (read-only).'),
        }),
      )
      .describe('Host folders (package caches, reference data) shown read-only inside every sandbox. User config only.')
      .optional(),
    ssh: z
      .strictObject({
        keys: z.array(z.string().min(1)).describe('Private keys a dedicated ssh-agent of the task holds (the sandbox gets the agent, never the keys).'),
      })
      .describe('ssh for tasks with a network: allow the hosts as host:22. User config only.')
      .optional(),
    templates: z
      .array(z.string().min(1))
      .describe(
        'Folders with your own templates (one sub-folder each, with a Dockerfile and an optional template.yaml). User config only: a template decides what runs.',
      )
      .optional(),
    approvals: z
      .record(
        z.string().min(1),
        z.strictObject({
          egress: z.array(z.string().min(1).max(300)).describe("Hosts this repository's moat.yaml asked for and you approved.").optional(),
          templates: z.array(z.string().min(1)).describe('Repository templates you approved, as name@tree (their exact content).').optional(),
        }),
      )
      .describe('What you approved per repository (keyed by its path), written by `moat approve`. User config only.')
      .optional(),
    secrets: z
      .record(
        envName,
        z.strictObject({
          from: z
            .union([
              z.strictObject({ env: envName.describe('A variable of the environment moat runs in.') }),
              z.strictObject({ file: z.string().min(1).describe('A file on the host (~ allowed); its content, trimmed.') }),
              z.strictObject({ command: z.array(z.string()).min(1).describe('A command moat runs on the host (argv, no shell); its output, trimmed.') }),
            ])
            .describe('Where moat reads the real value, on the host.'),
          hosts: z.array(z.string().min(1)).min(1).describe('Hosts the value may be sent to (exact names). They are allowed for egress too.'),
          header: z
            .string()
            .regex(/^[A-Za-z0-9-]{1,64}$/)
            .default('Authorization')
            .describe('Header the gateway overwrites with the value. Default Authorization.'),
          format: z
            .string()
            .includes('{value}')
            .optional()
            .describe('How the header is written; default "Bearer {value}" for Authorization, "{value}" otherwise.'),
          methods: z
            .array(z.string().regex(/^[A-Z]{1,16}$/))
            .optional()
            .describe('Only for these methods (default: all).'),
          pathPrefixes: z.array(z.string().startsWith('/')).optional().describe('Only for paths under these prefixes (default: all).'),
          route: z
            .string()
            .regex(/^[a-z0-9-]{1,32}$/)
            .optional()
            .describe('Plain-HTTP route in the sandbox: http://moat.gateway/<route>/… goes to https://<first host>/… with the header set.'),
          intercept: z
            .boolean()
            .optional()
            .describe(
              'For clients that cannot use a route: the gateway terminates TLS to the bound hosts (only those) with a CA made for this task alone, which only this sandbox trusts, and sets the header there.',
            ),
        }),
      )
      .describe(
        'Bound secrets: the sandbox sees a placeholder in the variable; the gateway writes the real value into the declared header on requests to the bound hosts only. User config only.',
      )
      .optional(),
    mcp: z
      .strictObject({
        merge: z
          .boolean()
          .describe(
            "Offer merge_task to MCP clients: they may merge a task's committed work into your current branch, except work touching files a host tool may run or follow (those stay yours: moat merge TASK --yes). Default false.",
          )
          .optional(),
      })
      .describe('What `moat mcp` may do beyond its default tools. User config only.')
      .optional(),
    engine: z
      .enum(['docker', 'podman', 'kubernetes'])
      .describe(
        'The container engine: docker or podman (its API socket; moat starts `podman system service` when it is not running), or kubernetes (tasks as pods; see "kubernetes"). Default: whichever answers, Docker first. MOAT_ENGINE and `moat --engine` override it. User config only.',
      )
      .optional(),
    kubernetes: z
      .object({
        kubeconfig: z.string().min(1).describe('The kubeconfig file. Default: KUBECONFIG, then ~/.kube/config.').optional(),
        context: z.string().min(1).describe("The kubeconfig's context to use (MOAT_K8S_CONTEXT overrides it). Default: its current context.").optional(),
        namespace: z
          .string()
          .regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/)
          .describe('The namespace of the pods (MOAT_K8S_NAMESPACE overrides it). Default: default.')
          .optional(),
        imageEngine: z
          .string()
          .min(1)
          .describe(
            'The Docker engine whose images the nodes run (unix:///…, tcp://…; MOAT_K8S_IMAGE_ENGINE overrides it): moat builds template images there. Without it the images must already be on the nodes; moat pulls nothing.',
          )
          .optional(),
        gvisorRuntimeClass: z.string().min(1).describe('The RuntimeClass that runs pods under gVisor, for isolation: gvisor.').optional(),
      })
      .describe('Where `engine: kubernetes` puts tasks. User config only.')
      .optional(),
    acceptUnenforcedLimits: z
      .array(z.enum(['memory', 'cpus', 'pids']))
      .describe(
        'Limits you accept to run without where the kernel cannot enforce them (rootless Podman on cgroup v1, cgroup controllers not delegated): `up` refuses such a task unless the limit is listed here, and doctor, ls and stats say NOT enforced. User config only.',
      )
      .optional(),
  })
  .describe("moat configuration: ~/.config/moat/config.yaml (yours) or moat.yaml at a repository root (the repository's, which may only narrow).");

export type MoatConfig = z.infer<typeof configSchema>;
