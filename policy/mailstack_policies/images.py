"""images-pinned: every image reference is pinned to one build (an exact version tag or a digest)."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, Severity

from .resources import CONTAINER, REMOTE_IMAGE, as_text, get
from .shared_rules import image_problem


def validate_images_pinned(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    """Report an image or container whose image reference is not pinned to one build."""
    if args.resource_type == REMOTE_IMAGE:
        ref, what = get(args.props, "name"), f"Image '{args.name}'"
    elif args.resource_type == CONTAINER:
        ref = get(args.props, "image")
        what = f"Container '{as_text(get(args.props, 'name')) or args.name}'"
    else:
        return
    if not isinstance(ref, str):
        return
    problem = image_problem(ref)
    if problem:
        report_violation(
            f"{what} uses '{ref}', which {problem}: a pull can then bring a different release "
            "(edge moved docker-mailserver to Dovecot 2.4). Pin an exact version tag such as "
            "':15.1.0' or a digest '@sha256:...' (mailstack:images).",
            None,
        )


images_pinned = ResourceValidationPolicy(
    name="images-pinned",
    description="Every container image is pinned to an exact version tag or digest, never latest/edge or no tag.",
    validate=validate_images_pinned,
    severity=Severity.HIGH,
)
