/* SPDX-License-Identifier: (GPL-2.0-only OR BSD-2-Clause) */
/*
 * policy.h: NetworkPolicy stage, owned by the policy work. Placeholder body
 * (allow everything) until that lands; keep the signature: see lib/ctx.h for
 * what the context offers and how verdicts are cached.
 */
#ifndef EP_POLICY_H
#define EP_POLICY_H

#include "ctx.h"

static __always_inline int ep_policy_stage(struct ep_ctx *ctx)
{
	if (ctx->ct) {
		ctx->ct->policy_verdict = EP_POLICY_ALLOW;
		ctx->ct->policy_epoch = ctx->cfg->policy_epoch;
	}
	return EP_CONTINUE;
}

#endif /* EP_POLICY_H */
