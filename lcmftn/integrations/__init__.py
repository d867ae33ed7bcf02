"""The only place in ``lcmftn`` that may import boto3 / mlflow. Import submodules explicitly;
nothing here is imported by ``import lcmftn``."""
