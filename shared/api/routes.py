"""Every path of the API, in one list: the HTTP adapter registers one trigger per entry."""

from __future__ import annotations

from shared.api import PathSpec, audit, auth, help, keys, kms, policies, sys, tokens, wrapping

ALL: tuple[PathSpec, ...] = (
    sys.HEALTH,
    sys.SEAL_STATUS,
    sys.LEADER,
    sys.INIT,
    sys.MOUNTS,
    sys.MOUNT,
    sys.MOUNT_TUNE,
    sys.REMOUNT,
    sys.REMOUNT_STATUS,
    sys.ROTATION_STATUS,
    sys.RECONCILE_STATUS,
    *help.ALL,
    *tokens.ALL,
    *wrapping.ALL,
    *audit.ALL,
    *auth.ALL,
    policies.POLICIES_ACL,
    policies.POLICY_ACL,
    policies.POLICY_LIST_LEGACY,
    policies.POLICY_LEGACY,
    policies.CAPABILITIES_SELF,
    policies.CAPABILITIES,
    policies.CAPABILITIES_ACCESSOR,
    keys.KEYS,
    keys.KEY,
    keys.ROTATE,
    keys.KEY_KMS,
    kms.PROVIDERS_PATH,
    kms.PROVIDER_PATH,
    kms.HEALTH,
    kms.DISTRIBUTED,
    kms.DISTRIBUTION,
)
